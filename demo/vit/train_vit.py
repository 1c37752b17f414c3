#!/usr/bin/python3
"""Trains BitBudget's small vision transformer on Fashion-MNIST and exports it to ONNX in two variants.

Run from the repository root (Debian bookworm: apt-get install -y python3-torch python3-onnx):

    ./demo/fetch-data.sh                      # Fashion-MNIST into demo/data/ (Debian package dataset-fashion-mnist)
    /usr/bin/python3 demo/vit/train_vit.py    # writes demo/vit/vit-fused.onnx, demo/vit/vit-split.onnx, golden.json

Preprocessing (demo/vit/preprocessing.json, the same as the demo CNN): grey 28x28 image, x = (pixel/255 - MEAN) / STD,
input "input" float32 [N,1,28,28]; output "logits" float32 [N,10].

The network (60,730 parameters, width 48, MLP 96): 7x7 patches (16 tokens) flattened in the graph and embedded by a Linear
layer (MatMul + Add), a class token expanded to the batch, learned position embeddings, 3 pre-norm blocks (LayerNorm -> attention with 4 heads ->
residual add, LayerNorm -> MLP with exact GELU -> residual add), a final LayerNorm and a Linear head on the class
token (Gemm): 14 linear layers.

Two exports of the SAME weights (so their logits agree to float rounding):
  vit-fused.onnx  opset 17, fused qkv Linear, LayerNormalization nodes (the standard torch.onnx.export form);
  vit-split.onnx  opset 13, separate q/k/v Linear layers, LayerNorm decomposed into ReduceMean/Sub/Pow/Add/Sqrt/Div.
The split variant has 20 linear layers (each block: q, k, v, proj, fc1, fc2).

Training: 3 epochs over the first 30,000 training images, AdamW + one-cycle; measured 83.67 % test top-1 (fp32, 10k images),
1,272 s wall on 2 threads with the machine's 2 cores shared (load 20-30); about a quarter of that on an idle machine.

Deterministic: fixed seeds, a seeded shuffling generator, 2 threads, deterministic algorithms.
"""
import os

# Passive OpenMP waiting: with the 2 cores shared by other work, spinning threads slow training tenfold.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import hashlib
import json
import math
import random
import sys
import time
import warnings

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from train import MEAN, STD, load_split, golden_input, evaluate  # noqa: E402  (the demo CNN's data helpers)

PATCH = 7
TOKENS = (28 // PATCH) ** 2
DIM = 48
HEADS = 4
MLP = 96
DEPTH = 3


class DecomposedLayerNorm(nn.Module):
    """LayerNorm written out, so an opset-13 export shows ReduceMean/Sub/Pow/Add/Sqrt/Div/Mul/Add (older exporters' form)."""

    def __init__(self, norm: nn.LayerNorm):
        super().__init__()
        self.weight, self.bias, self.eps = norm.weight, norm.bias, norm.eps

    def forward(self, x):
        mean = x.mean(-1, keepdim=True)
        centered = x - mean
        var = centered.pow(2).mean(-1, keepdim=True)
        return centered / torch.sqrt(var + self.eps) * self.weight + self.bias


class Attention(nn.Module):
    def __init__(self):
        super().__init__()
        self.qkv = nn.Linear(DIM, 3 * DIM)
        self.proj = nn.Linear(DIM, DIM)
        self.split = False

    def forward(self, x):
        b, n, c = x.shape
        d = c // HEADS
        if self.split:
            q = self.q(x).reshape(b, n, HEADS, d).permute(0, 2, 1, 3)
            k = self.k(x).reshape(b, n, HEADS, d).permute(0, 2, 1, 3)
            v = self.v(x).reshape(b, n, HEADS, d).permute(0, 2, 1, 3)
        else:
            q, k, v = self.qkv(x).reshape(b, n, 3, HEADS, d).permute(2, 0, 3, 1, 4).unbind(0)
        attn = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(d))
        out = attn.softmax(-1) @ v
        return self.proj(out.transpose(1, 2).reshape(b, n, c))

    def to_split(self):
        """Separate q/k/v Linear layers holding exactly the rows of the fused qkv weight."""
        for i, name in enumerate("qkv"):
            layer = nn.Linear(DIM, DIM)
            layer.weight.data.copy_(self.qkv.weight.data[i * DIM:(i + 1) * DIM])
            layer.bias.data.copy_(self.qkv.bias.data[i * DIM:(i + 1) * DIM])
            setattr(self, name, layer)
        del self.qkv
        self.split = True


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.norm1 = nn.LayerNorm(DIM)
        self.attn = Attention()
        self.norm2 = nn.LayerNorm(DIM)
        self.fc1 = nn.Linear(DIM, MLP)
        self.fc2 = nn.Linear(MLP, DIM)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.fc2(F.gelu(self.fc1(self.norm2(x))))


class TinyVit(nn.Module):
    def __init__(self):
        super().__init__()
        self.patch = nn.Linear(PATCH * PATCH, DIM)
        self.cls = nn.Parameter(torch.zeros(1, 1, DIM))
        self.pos = nn.Parameter(torch.randn(1, TOKENS + 1, DIM) * 0.02)
        self.blocks = nn.ModuleList(Block() for _ in range(DEPTH))
        self.norm = nn.LayerNorm(DIM)
        self.head = nn.Linear(DIM, 10)

    def forward(self, x):
        b = x.shape[0]
        g = 28 // PATCH
        patches = x.reshape(b, g, PATCH, g, PATCH).permute(0, 1, 3, 2, 4).reshape(b, TOKENS, PATCH * PATCH)
        tokens = torch.cat([self.cls.expand(b, -1, -1), self.patch(patches)], dim=1) + self.pos
        for block in self.blocks:
            tokens = block(tokens)
        return self.head(self.norm(tokens)[:, 0])

    def to_split_variant(self):
        for block in self.blocks:
            block.attn.to_split()
            block.norm1 = DecomposedLayerNorm(block.norm1)
            block.norm2 = DecomposedLayerNorm(block.norm2)
        self.norm = DecomposedLayerNorm(self.norm)


def export(model, path, opset):
    tmp = path + ".tmp"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, torch.zeros(2, 1, 28, 28), tmp, opset_version=opset,
                          input_names=["input"], output_names=["logits"],
                          dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}}, do_constant_folding=True)
    os.replace(tmp, path)
    with open(path, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    print(f"wrote {path} (opset {opset}, {os.path.getsize(path)} bytes, sha256 {digest})")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=os.path.join(os.path.dirname(HERE), "data"))
    ap.add_argument("--out", default=HERE)
    # Small on purpose: the 2 CPU cores are shared, and training stays under ~10 minutes there.
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--train-images", type=int, default=30000, help="the first N training images (all 60000 takes twice as long)")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--seed", type=int, default=20261203)
    args = ap.parse_args()

    torch.set_num_threads(2)
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.use_deterministic_algorithms(True)

    start = time.time()
    x_train, y_train = load_split(args.data, "train")
    x_test, y_test = load_split(args.data, "t10k")
    x_train, y_train = x_train[:args.train_images], y_train[:args.train_images]
    print(f"data: {len(x_train)} train, {len(x_test)} test images from {args.data}")

    model = TinyVit()
    print(f"model: {sum(p.numel() for p in model.parameters())} parameters")
    steps = args.epochs * ((len(x_train) + args.batch - 1) // args.batch)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.05)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=steps, pct_start=0.15)
    gen = torch.Generator().manual_seed(args.seed)
    for epoch in range(args.epochs):
        model.train()
        order = torch.randperm(len(x_train), generator=gen)
        total = 0.0
        for i in range(0, len(x_train), args.batch):
            idx = order[i:i + args.batch]
            loss = F.cross_entropy(model(x_train[idx]), y_train[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
            if (i // args.batch) % 20 == 19:
                print(f"  step {i // args.batch + 1}: loss {loss.item():.3f}, {time.time() - start:.0f} s", flush=True)
        acc = evaluate(model, x_test, y_test)
        print(f"epoch {epoch + 1}/{args.epochs}: train loss {total / len(x_train):.4f}, test accuracy {acc * 100:.2f}%, "
              f"{time.time() - start:.0f} s", flush=True)
    train_seconds = time.time() - start

    model.eval()
    acc = evaluate(model, x_test, y_test)
    with torch.no_grad():
        golden = model(golden_input()).numpy()
    os.makedirs(args.out, exist_ok=True)
    export(model, os.path.join(args.out, "vit-fused.onnx"), 17)
    model.to_split_variant()
    split_acc = evaluate(model, x_test, y_test)
    with torch.no_grad():
        split_golden = model(golden_input()).numpy()
    print(f"split variant: test accuracy {split_acc * 100:.2f}%, max |logit difference| {np.abs(split_golden - golden).max():.2e}")
    export(model, os.path.join(args.out, "vit-split.onnx"), 13)

    with open(os.path.join(args.out, "golden.json"), "w") as f:
        json.dump({"input": "pixel(n,y,x) = (61*n + 17*y + 29*x + (x*y) % 11) % 256; x = (pixel/255 - mean)/std; shape [4,1,28,28]",
                   "mean": MEAN, "std": STD, "test_accuracy": acc, "split_test_accuracy": split_acc,
                   "logits": [[float(f"{v:.6g}") for v in row] for row in golden]}, f, indent=1)
        f.write("\n")
    print(f"test accuracy (PyTorch, fp32): {acc * 100:.2f}% ({round(acc * len(x_test))}/{len(x_test)})")
    print(f"training time: {train_seconds:.0f} s on {torch.get_num_threads()} threads")
    return 0


if __name__ == "__main__":
    sys.exit(main())
