#!/usr/bin/env bash
# Issue 17 on real PyTorch exports: exports a small MNIST CNN three ways (extra output + LogSoftmax with the batch fixed at
# 128, Softmax head, plain logits) into a temporary folder and runs inspect, eval, quantize and run on them.
# Needs Debian's python3-torch and python3-onnx (apt-get install -y python3-torch python3-onnx) and ../shared/assets.
# Usage: tests/scripts/quirky_exports.sh [WORK_DIR]   (default: a new temporary folder, kept for inspection)
set -euo pipefail
here="$(cd "$(dirname "$0")/../.." && pwd)"
work="${1:-$(mktemp -d)}"
mnist="$here/../shared/assets/mnist"
idx="$mnist/t10k-images-idx3-ubyte"
bb="$here/bitbudget"
/usr/bin/python3 "$here/tests/scripts/export_quirky_cnn.py" "$work" "$mnist" 2> >(grep -v -i warn >&2)
echo "== inspect (extra output)"; "$bb" inspect "$work/cnn-extra-output.onnx" | tail -2
for m in logits softmax extra-output; do
  echo "== eval cnn-$m.onnx on t10k images (odd classes)"
  "$bb" eval "$work/cnn-$m.onnx" --data "$idx" --split odd-classes 2>&1 | grep -E "^(preset|output|top-1)"
done
echo "== quantize the extra-output export at 4 bits (GPTQ, calibration on the even classes)"
"$bb" quantize "$work/cnn-extra-output.onnx" --bits 4 --calib "$idx" --calib-split even-classes --calib-images 256 -o "$work/q4.onnx" --force 2>&1 | tail -2
"$bb" eval "$work/q4.onnx" --data "$idx" --split odd-classes 2>&1 | grep -E "^top-1"
for m in extra-output softmax; do
  echo "== run on cnn-$m.onnx"
  rm -rf "$work/run-$m"
  "$bb" run -m "$work/cnn-$m.onnx" --calib "$idx" --calib-split even-classes --eval "$idx" --eval-split odd-classes \
    --budget 6.5bits --pareto "7bits" --method clado,independent,uniform --calib-images 256 --sens-images 256 -o "$work/run-$m" 2>&1 | grep -v "^data:"
done
echo "outputs in $work"
