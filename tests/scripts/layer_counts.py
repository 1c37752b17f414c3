#!/usr/bin/env python3
"""Independent recount of the layer figures the tests and the README state (issue 20: numbers with a stated source).

Reads each model with the onnx package (Debian: python3-onnx, run with /usr/bin/python3), finds every Conv/Gemm/MatMul
whose weight is a constant (an initializer, or a Reshape/Transpose/Identity of one), infers shapes with ONNX's own shape
inference, and prints: layers, weight elements, weight + bias elements (a Conv's bias input, a Gemm's C, or a per-channel
Add right after a Conv, as CNTK exports write it), initializer elements in the file, MACs per image, and the OMPQ
minimum average bits (first and last layer at 8 bits, every other at 2).

    /usr/bin/python3 tests/scripts/layer_counts.py ../shared/assets/cifar10/resnet20.onnx ../shared/assets/mnist/mnist-8.onnx \
        ../shared/assets/imagenet/squeezenet1.1.onnx demo/model/demo-cnn.onnx
"""
import sys

import numpy as np
import onnx
from onnx import numpy_helper, shape_inference


def constant(name, inits, producers):
    """The constant tensor behind name (an initializer, or Reshape/Transpose/Identity of one), else None."""
    if name in inits:
        return numpy_helper.to_array(inits[name])
    node = producers.get(name)
    if node is None or node.op_type not in ("Reshape", "Transpose", "Identity"):
        return None
    x = constant(node.input[0], inits, producers)
    if x is None:
        return None
    if node.op_type == "Identity":
        return x
    if node.op_type == "Transpose":
        perm = [a.ints for a in node.attribute if a.name == "perm"]
        return np.transpose(x, perm[0] if perm else None)
    shape = constant(node.input[1], inits, producers)
    return None if shape is None else x.reshape([int(d) for d in shape])


def dims(value_info):
    return [d.dim_value if d.HasField("dim_value") else 1 for d in value_info.type.tensor_type.shape.dim]


def main(path):
    model = onnx.load(path)
    g = model.graph
    inits = {t.name: t for t in g.initializer}
    producers = {o: n for n in g.node for o in n.output}
    consumers = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    inferred = shape_inference.infer_shapes(model).graph
    shapes = {v.name: dims(v) for v in list(inferred.value_info) + list(inferred.output) + list(inferred.input)}
    layers = []
    for n in g.node:
        if n.op_type not in ("Conv", "Gemm", "MatMul") or len(n.input) < 2:
            continue
        w = constant(n.input[1], inits, producers)
        if w is None:
            continue
        out = shapes[n.output[0]]
        if n.op_type == "Conv":
            macs = int(np.prod(out[1:])) * int(np.prod(w.shape[1:]))
            bias = constant(n.input[2], inits, producers).size if len(n.input) > 2 and n.input[2] else 0
            channels = w.shape[0]
        else:
            trans_b = any(a.name == "transB" and a.i == 1 for a in n.attribute)
            k, m = (w.shape[1], w.shape[0]) if trans_b else (w.shape[0], w.shape[1])
            macs = k * m
            bias = constant(n.input[2], inits, producers).size if len(n.input) > 2 and n.input[2] else 0
            channels = m
        if bias == 0 and n.op_type == "Conv":   # a per-channel Add right after a Conv is its bias (what BitBudget folds)
            after = consumers.get(n.output[0], [])
            if len(after) == 1 and after[0].op_type == "Add":
                other = [i for i in after[0].input if i != n.output[0]][0]
                c = constant(other, inits, producers)
                if c is not None and c.size == channels:
                    bias = c.size
        layers.append((n.name or n.output[0], n.op_type, int(w.size), int(bias), macs))
    weights = sum(l[2] for l in layers)
    minimum = (8 * (layers[0][2] + layers[-1][2]) + 2 * (weights - layers[0][2] - layers[-1][2])) / weights
    ops = {}
    for l in layers:
        ops[l[1]] = ops.get(l[1], 0) + 1
    print(f"{path}: {len(layers)} layers ({' + '.join(f'{v} {k}' for k, v in ops.items())}), weights {weights:,}, "
          f"weight+bias {weights + sum(l[3] for l in layers):,}, initializer elements {sum(int(np.prod(t.dims)) for t in g.initializer):,}, "
          f"MACs/image {sum(l[4] for l in layers):,}, first layer MACs {layers[0][4]:,}, last layer MACs {layers[-1][4]:,}, "
          f"OMPQ minimum avg bits (8/2/8) {minimum:.4f}")


if __name__ == "__main__":
    for p in sys.argv[1:]:
        main(p)
