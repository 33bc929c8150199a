#!/usr/bin/env bash
# The README's first command on a fresh clone with pip's cache off: seconds from
# `make serve` to the first embedding (install, compile llama-cpp-python, convert the
# default model, build its ONNX graph, start). Usage: bash bench/install_time.sh [commit]
set -euo pipefail
COMMIT=${1:-HEAD}
WORK=$(mktemp -d)
SERVE=
trap '[ -n "$SERVE" ] && kill -- -"$SERVE" 2>/dev/null; rm -rf "$WORK"' EXIT
git clone -q "$(git rev-parse --show-toplevel)" "$WORK/clone"
git -C "$WORK/clone" checkout -q "$COMMIT"
cd "$WORK/clone"
export EMBELLAMA_HOME=$WORK/home PIP_NO_CACHE_DIR=1
start=$(date +%s)
stamp() { while IFS= read -r line; do echo "$(( $(date +%s) - start )) s  $line"; done; }
setsid make serve > >(stamp > "$WORK/serve.log") 2>&1 &
SERVE=$!  # make's process group: make, the server and its workers
until curl -sf -X POST 127.0.0.1:8080/v1/embeddings -H 'content-type: application/json' \
    -d '{"input": "hello", "model": "all-MiniLM-L6-v2"}' -o /dev/null; do
  sleep 0.5
  if (( $(date +%s) - start > 1800 )); then echo "no embedding after 30 min" >&2; exit 1; fi
done
grep -E "Created wheel for llama-cpp-python|Successfully installed convert|prepared:" "$WORK/serve.log" || true
echo "first embedding $(( $(date +%s) - start )) s after make serve"
