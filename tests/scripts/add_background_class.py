#!/usr/bin/env python3
"""Writes a copy of an ImageNet classifier with 1001 outputs, class 0 a "background" class that never wins (as
TensorFlow-slim models have), to check --label-offset: /usr/bin/python3 add_background_class.py IN.onnx OUT.onnx
(needs python3-onnx; the output is never committed)."""
import sys

import onnx
from onnx import helper, numpy_helper
import numpy as np

model = onnx.load(sys.argv[1])
graph = model.graph
out = graph.output[0]
name = out.name
renamed = name + "_1000"
for node in graph.node:
    node.output[:] = [renamed if o == name else o for o in node.output]
graph.initializer.extend([
    numpy_helper.from_array(np.array([0], dtype=np.int64), "bg_start"),
    numpy_helper.from_array(np.array([1], dtype=np.int64), "bg_end"),
    numpy_helper.from_array(np.array([1], dtype=np.int64), "bg_axis"),
    numpy_helper.from_array(np.array(100.0, dtype=np.float32), "bg_margin"),
])
graph.node.extend([
    helper.make_node("Slice", [renamed, "bg_start", "bg_end", "bg_axis"], ["bg_first"], name="bg_slice"),
    helper.make_node("Sub", ["bg_first", "bg_margin"], ["bg_logit"], name="bg_sub"),
    helper.make_node("Concat", ["bg_logit", renamed], [name], name="bg_concat", axis=1),
])
out.type.tensor_type.shape.dim[1].dim_value = 1001
opset = next(o for o in model.opset_import if o.domain in ("", "ai.onnx"))
opset.version = max(opset.version, 10)   # Slice with inputs
onnx.save(model, sys.argv[2])
