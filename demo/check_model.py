#!/usr/bin/python3
"""Validates demo/model/demo-cnn.onnx with onnx.checker (full shape inference) and prints its op counts and I/O.

Usage: /usr/bin/python3 demo/check_model.py [model.onnx]   (Debian: apt-get install -y python3-onnx)
"""
import collections
import os
import sys

import onnx

path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "model", "demo-cnn.onnx")
model = onnx.load(path)
onnx.checker.check_model(model, full_check=True)
ops = collections.Counter(n.op_type for n in model.graph.node)
dims = lambda v: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
print(f"{path}: valid (onnx {onnx.__version__}), ir {model.ir_version}, opset {model.opset_import[0].version}, {os.path.getsize(path)} bytes")
print("inputs: " + ", ".join(f"{v.name} {dims(v)}" for v in model.graph.input))
print("outputs: " + ", ".join(f"{v.name} {dims(v)}" for v in model.graph.output))
print("ops: " + ", ".join(f"{k} {v}" for k, v in sorted(ops.items())))
quantizable = ops["Conv"] + ops["Gemm"] + ops["MatMul"]
print(f"quantizable layers (Conv+Gemm+MatMul): {quantizable}")
sys.exit(0 if quantizable >= 8 else 1)
