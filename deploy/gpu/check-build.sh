#!/usr/bin/env bash
# CI check of the GPU build: builds the CLI with the CUDA build of ONNX Runtime (-p:OrtPackage=gpu, restore and objects
# in obj/gpu, output in a temporary folder, linux-x64 only) and checks that it really is that build: the output carries
# libonnxruntime_providers_cuda.so, bitbudget.deps.json references Microsoft.ML.OnnxRuntime.Gpu.Linux and not the CPU
# package, and `eval --device cuda` either runs (a machine with an NVIDIA GPU and CUDA) or stops with exit code 4 and
# "Cannot start CUDAExecutionProvider" (the provider is there, the GPU is not) — never with the CPU build's advice.
# Last line: "gpu build: passed" or "gpu build: FAILED (...)"; exit 0 or 1. Needs ../shared/assets for the eval.
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
out="$(mktemp -d /tmp/bitbudget-gpu-XXXXXX)"
trap 'rm -rf "$out"' EXIT
fail() { echo "gpu build: FAILED ($*)"; exit 1; }
dotnet build "$repo/src/BitBudget.Cli" -c Release -r linux-x64 --self-contained false -p:OrtPackage=gpu -o "$out" -v quiet -nologo \
    > "$out/build.log" 2>&1 || fail "build: $(grep -m 3 -E 'error' "$out/build.log")"
[ -f "$out/runtimes/linux-x64/native/libonnxruntime_providers_cuda.so" ] || [ -f "$out/libonnxruntime_providers_cuda.so" ] \
    || fail "no libonnxruntime_providers_cuda.so in the output"
grep -q '"Microsoft.ML.OnnxRuntime.Gpu.Linux/' "$out/bitbudget.deps.json" || fail "deps.json does not reference Microsoft.ML.OnnxRuntime.Gpu.Linux"
! grep -q '"Microsoft.ML.OnnxRuntime/' "$out/bitbudget.deps.json" || fail "deps.json still references the CPU package"
assets="$(cd "$repo/.." && pwd)/shared/assets"
set +e
"$out/bitbudget" eval "$assets/cifar10/resnet20.onnx" --data "$assets/cifar10/eran-test-100.csv" --device cuda --json >"$out/eval.out" 2>"$out/eval.err"
code=$?
set -e
error=$(grep -m 1 '^error:' "$out/eval.err" || true)
if [ $code -eq 0 ]; then
    echo "eval --device cuda ran on a GPU"
elif [ $code -eq 4 ] && [[ "$error" == "error: Cannot start CUDAExecutionProvider"* ]]; then
    echo "no usable GPU here; the CUDA provider is present and says: ${error:0:150}..."
else
    fail "eval --device cuda exited $code: $error"
fi
echo "gpu build: passed"
