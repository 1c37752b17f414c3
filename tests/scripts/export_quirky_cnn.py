#!/usr/bin/env python3
"""Exports small PyTorch CNNs with the quirks of issue 17 into a folder (never committed; run by tests/scripts/quirky_exports.sh).

Trains one 3-conv MNIST CNN for three epochs on t10k images 0-4999 (raw 0..255 pixels, as the mnist preset feeds them), then writes:
  cnn-extra-output.onnx  LogSoftmax output first, plus a spurious `features.view(128, -1)` output; batch fixed at 128; opset 11
  cnn-softmax.onnx       Softmax head, dynamic batch; opset 13
  cnn-logits.onnx        the same network without a head (the reference for the losses)
Needs Debian's python3-torch and python3-onnx: /usr/bin/python3 export_quirky_cnn.py OUT_DIR MNIST_IDX_FOLDER
"""
import os
import struct
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F


def read_idx(folder):
    with open(os.path.join(folder, "t10k-images-idx3-ubyte"), "rb") as f:
        _, n, rows, cols = struct.unpack(">IIII", f.read(16))
        images = torch.frombuffer(bytearray(f.read()), dtype=torch.uint8).reshape(n, 1, rows, cols).float()
    with open(os.path.join(folder, "t10k-labels-idx1-ubyte"), "rb") as f:
        f.read(8)
        labels = torch.frombuffer(bytearray(f.read()), dtype=torch.uint8).long()
    return images, labels


class Cnn(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1)
        self.conv3 = nn.Conv2d(16, 16, 3, padding=1)
        self.fc = nn.Linear(16 * 7 * 7, 10)
        self.head = "logits"

    def features(self, x):
        x = x / 255.0
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return F.relu(self.conv3(x))

    def forward(self, x):
        f = self.features(x)
        logits = self.fc(torch.flatten(f, 1))
        if self.head == "extra":
            return F.log_softmax(logits, dim=1), f.view(128, -1)
        if self.head == "softmax":
            return F.softmax(logits, dim=1)
        return logits


def main():
    out, mnist = sys.argv[1], sys.argv[2]
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(0)
    images, labels = read_idx(mnist)
    model = Cnn()
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    for _ in range(3):
        for start in range(0, 5000, 64):
            optimizer.zero_grad()
            loss = F.cross_entropy(model(images[start:start + 64]), labels[start:start + 64])
            loss.backward()
            optimizer.step()
    model.eval()
    with torch.no_grad():
        test = model(images[5000:]).argmax(1).eq(labels[5000:]).float().mean().item() * 100
        ce = F.cross_entropy(model(images[5000:]), labels[5000:]).item()
        odd = labels % 2 == 1   # bitbudget's --split odd-classes
        odd_top1 = model(images[odd]).argmax(1).eq(labels[odd]).float().mean().item() * 100
        odd_ce = F.cross_entropy(model(images[odd]), labels[odd]).item()
    print(f"pytorch: top-1 {test:.2f} % cross-entropy {ce:.4f} on t10k images 5000-9999; "
          f"top-1 {odd_top1:.2f} % cross-entropy {odd_ce:.4f} on the {int(odd.sum())} odd-class images")
    dummy = images[:128]
    model.head = "extra"
    torch.onnx.export(model, dummy, os.path.join(out, "cnn-extra-output.onnx"), opset_version=11,
                      input_names=["input"], output_names=["log_probs", "features"])
    model.head = "softmax"
    torch.onnx.export(model, dummy, os.path.join(out, "cnn-softmax.onnx"), opset_version=13,
                      input_names=["input"], output_names=["prob"], dynamic_axes={"input": {0: "N"}, "prob": {0: "N"}})
    model.head = "logits"
    torch.onnx.export(model, dummy, os.path.join(out, "cnn-logits.onnx"), opset_version=13,
                      input_names=["input"], output_names=["logits"], dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}})


if __name__ == "__main__":
    main()
