#!/usr/bin/env bash
# Install llama-cpp-python's own OpenAI server (same pinned version) into a separate
# venv under $BENCH_CACHE; pip's wheel cache makes this quick after the first build.
set -euo pipefail
CACHE=${BENCH_CACHE:-$HOME/.cache/embellama-bench}
VENV=$CACHE/venv-llama-cpp-python
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q 'llama-cpp-python[server]==0.3.36' >&2
fi
echo "$VENV/bin/python"
