#!/usr/bin/python3
"""Trains BitBudget's demo CNN on Fashion-MNIST and exports it to ONNX.

Run from the repository root (Debian bookworm: apt-get install -y python3-torch python3-onnx):

    ./demo/fetch-data.sh                      # Fashion-MNIST into demo/data/ (Debian package dataset-fashion-mnist)
    /usr/bin/python3 demo/train.py            # writes demo/model/demo-cnn.onnx

Preprocessing (also in demo/model/preprocess.json): grey 28x28 image, no resize, x = (pixel/255 - MEAN) / STD,
layout NCHW, input "input" float32 [N,1,28,28]; output "logits" float32 [N,10] (class = argmax).

The network has 9 quantizable layers (7 Conv + 2 Gemm). Six convolutions are followed by BatchNormalization,
exported as separate nodes so that BitBudget's graph preparation folds them; the stem conv has a plain bias.
Two residual blocks (one depthwise-separable, one plain 3x3) make the layers' quantization errors interact.

Deterministic: fixed seeds, a seeded shuffling generator, 2 threads, deterministic algorithms; the same
torch build gives the same weights on every run.
"""
import os

# Passive OpenMP waiting: with the 2 cores shared by other work, spinning threads slow training tenfold.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import gzip
import json
import hashlib
import random
import struct
import sys
import time
import warnings

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

# Mean and standard deviation of the Fashion-MNIST training pixels after /255 (measured: 0.28604, 0.35302),
# rounded to the constants the model is trained with.
MEAN = 0.2860
STD = 0.3530
CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]

HERE = os.path.dirname(os.path.abspath(__file__))


def read_idx(path):
    """Reads an IDX file (plain or .gz) into a numpy array of uint8."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    zero, dtype, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte IDX file")
    dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load_split(data_dir, prefix):
    images = read_idx(os.path.join(data_dir, f"{prefix}-images-idx3-ubyte.gz"))
    labels = read_idx(os.path.join(data_dir, f"{prefix}-labels-idx1-ubyte.gz"))
    x = torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1)
    x = (x - MEAN) / STD
    return x, torch.from_numpy(labels.astype(np.int64))


def conv_bn(cin, cout, k=3, stride=1, groups=1):
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout))


class DemoCnn(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(1, 16, 3, 1, 1, bias=True)          # 28x28, no BN
        self.down1 = conv_bn(16, 32, stride=2)                    # 14x14
        self.dw = conv_bn(32, 32, groups=32)                      # depthwise 3x3, 14x14
        self.pw = conv_bn(32, 32, k=1)                            # pointwise, + skip from down1
        self.down2 = conv_bn(32, 32, stride=2)                    # 7x7
        self.res_a = conv_bn(32, 32)                              # 7x7
        self.res_b = conv_bn(32, 32)                              # 7x7, + skip from down2
        self.fc1 = nn.Linear(32, 32)
        self.fc2 = nn.Linear(32, 10)

    def forward(self, x):
        x = F.relu(self.stem(x))
        x = F.relu(self.down1(x))
        x = F.relu(x + self.pw(F.relu(self.dw(x))))
        x = F.relu(self.down2(x))
        x = F.relu(x + self.res_b(F.relu(self.res_a(x))))
        x = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
        return self.fc2(F.relu(self.fc1(x)))


def golden_input(count=4):
    """Synthetic images anyone can rebuild: pixel(n, y, x) = (61n + 17y + 29x + (x*y mod 11)) mod 256, then normalized."""
    n, y, x = np.meshgrid(np.arange(count), np.arange(28), np.arange(28), indexing="ij")
    pixels = (61 * n + 17 * y + 29 * x + (x * y) % 11) % 256
    return torch.from_numpy(((pixels.astype(np.float32) / 255.0 - MEAN) / STD).reshape(count, 1, 28, 28))


def evaluate(model, x, y, batch=1000):
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(x), batch):
            correct += (model(x[i:i + batch]).argmax(1) == y[i:i + batch]).sum().item()
    return correct / len(x)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=os.path.join(HERE, "data"), help="folder with the Fashion-MNIST IDX .gz files")
    ap.add_argument("--out", default=os.path.join(HERE, "model", "demo-cnn.onnx"))
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=0.01)
    ap.add_argument("--seed", type=int, default=20240501)
    args = ap.parse_args()

    torch.set_num_threads(2)
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.use_deterministic_algorithms(True)

    start = time.time()
    x_train, y_train = load_split(args.data, "train")
    x_test, y_test = load_split(args.data, "t10k")
    print(f"data: {len(x_train)} train, {len(x_test)} test images from {args.data}")

    model = DemoCnn()
    params = sum(p.numel() for p in model.parameters())
    print(f"model: {params} parameters")
    steps_per_epoch = (len(x_train) + args.batch - 1) // args.batch
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, weight_decay=5e-4, nesterov=True)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr * 10, total_steps=args.epochs * steps_per_epoch)
    gen = torch.Generator().manual_seed(args.seed)

    for epoch in range(args.epochs):
        model.train()
        order = torch.randperm(len(x_train), generator=gen)
        total_loss = 0.0
        for i in range(0, len(x_train), args.batch):
            idx = order[i:i + args.batch]
            loss = F.cross_entropy(model(x_train[idx]), y_train[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total_loss += loss.item() * len(idx)
        acc = evaluate(model, x_test, y_test)
        print(f"epoch {epoch + 1}/{args.epochs}: train loss {total_loss / len(x_train):.4f}, "
              f"test accuracy {acc * 100:.2f}%, {time.time() - start:.0f} s")

    train_seconds = time.time() - start
    model.eval()
    acc = evaluate(model, x_test, y_test)

    # PRESERVE keeps BatchNormalization as its own (inference-mode) node; EVAL would fuse it into the Conv
    # during export, and the demo is meant to show BitBudget doing that fold itself.
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    tmp = args.out + ".tmp"
    with warnings.catch_warnings():
        # PRESERVE with an eval-mode model exports inference BatchNorm; constant folding is safe here.
        warnings.filterwarnings("ignore", message="It is recommended that constant folding be turned off")
        torch.onnx.export(model, torch.zeros(1, 1, 28, 28), tmp, opset_version=13,
                          input_names=["input"], output_names=["logits"],
                          dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}},
                          training=torch.onnx.TrainingMode.PRESERVE, do_constant_folding=True)
    os.replace(tmp, args.out)
    with open(args.out, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    # Reference logits on synthetic images, so a test can check the ONNX file (and BitBudget's BatchNorm folding)
    # against PyTorch without the data set.
    with torch.no_grad():
        golden = model(golden_input()).numpy()
    golden_path = os.path.join(os.path.dirname(os.path.abspath(args.out)), "golden.json")
    with open(golden_path, "w") as f:
        json.dump({"input": "pixel(n,y,x) = (61*n + 17*y + 29*x + (x*y) % 11) % 256; x = (pixel/255 - mean)/std; shape [4,1,28,28]",
                   "mean": MEAN, "std": STD, "test_accuracy": acc,
                   "logits": [[float(f"{v:.6g}") for v in row] for row in golden]}, f, indent=1)
        f.write("\n")
    print(f"test accuracy (PyTorch, fp32): {acc * 100:.2f}% ({round(acc * len(x_test))}/{len(x_test)})")
    print(f"training time: {train_seconds:.0f} s on {torch.get_num_threads()} threads")
    print(f"wrote {args.out} ({os.path.getsize(args.out)} bytes, sha256 {digest})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
