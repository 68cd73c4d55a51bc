#!/usr/bin/env bash
# The llama.cpp peer without its AMX kernels, for CPUs that report AMX (Intel Sapphire Rapids
# and later) under a hypervisor that does not let a process use the AMX tiles: there the
# native build of ../shared/tools/llamacpp-peer.sh crashes in ggml_backend_amx_mul_mat
# (SIGSEGV on the first product). Same llama.cpp source, every other instruction set the
# native build would use (AVX2, FMA, F16C, BMI2, AVX-512 F/BW/VL/DQ/CD, VBMI, VNNI, BF16).
# Built once into $APR_PEER_NOAMX_DIR (default ~/.cache/apr/peer-noamx); prints the bin
# directory. The other scripts take it as LLAMA_BIN=... / LLAMA_CPP=...
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${APR_PEER_NOAMX_DIR:-$HOME/.cache/apr/peer-noamx}
bin="$dir/llama.cpp/build/bin"
if [ -x "$bin/llama-bench" ] && [ -x "$bin/llama-perplexity" ]; then echo "$bin"; exit 0; fi
# The source comes from the shared peer script's download (it builds the native peer too).
src="$(bash ../shared/tools/llamacpp-peer.sh)/../.."
mkdir -p "$dir"
rm -rf "$dir/llama.cpp"
cp -r "$src" "$dir/llama.cpp"
rm -rf "$dir/llama.cpp/build"
cd "$dir/llama.cpp"
cmake -B build -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF -DLLAMA_CURL=OFF \
  -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON \
  -DGGML_AVX512=ON -DGGML_AVX512_VBMI=ON -DGGML_AVX512_VNNI=ON -DGGML_AVX512_BF16=ON \
  -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF \
  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_SERVER=ON >&2
cmake --build build -j"$(nproc)" --target llama-bench llama-cli llama-perplexity llama-quantize \
  llama-server llama-imatrix >&2
echo "$bin"
