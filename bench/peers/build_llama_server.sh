#!/usr/bin/env bash
# Build llama.cpp's llama-server from the vendor/llama.cpp inside the llama-cpp-python
# sdist we pin, so both run the same llama.cpp. Nothing lands in the repo: source and
# binary live in $BENCH_CACHE (default ~/.cache/embellama-bench). ~7 min on 2 cores.
set -euo pipefail
VERSION=0.3.36
CACHE=${BENCH_CACHE:-$HOME/.cache/embellama-bench}
BIN=$CACHE/llama-server
if [ -x "$BIN" ]; then echo "$BIN"; exit 0; fi
mkdir -p "$CACHE/src"
cd "$CACHE/src"
if [ ! -d "llama_cpp_python-$VERSION" ]; then
  python3 -m pip download --no-deps --no-binary :all: -q "llama-cpp-python==$VERSION" -d .
  tar xzf "llama_cpp_python-$VERSION.tar.gz"
fi
SRC="$CACHE/src/llama_cpp_python-$VERSION/vendor/llama.cpp"
cmake -S "$SRC" -B "$CACHE/build" -DCMAKE_BUILD_TYPE=Release -DLLAMA_CURL=OFF \
  -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF >&2
cmake --build "$CACHE/build" --target llama-server -j "$(nproc)" >&2
cp "$CACHE/build/bin/llama-server" "$BIN"
echo "$BIN"
