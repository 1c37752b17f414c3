#!/usr/bin/env python3
"""CLADO cost model for docs/scale.md: per model, the quantizable layers (Conv/Gemm/MatMul with a constant weight) with
their MACs per image and which layers depend on which, from the architecture definitions (torchvision's ResNet-18/50,
MobileNetV2, ViT-B/16 at 224x224; no framework needed). It computes what BitBudget's measurement executes — the same
formula as src/BitBudget/Sensitivity/ShardPlan.cs: unit (u, s) runs u's cone once and each later searched layer's cone once
per scheme; one full-precision pass per batch — and the evaluations, the FLOPs of the reference loop and the activation
memory. Usage: python3 docs/scale_model.py [S=3] [images=512]"""
import sys

S = int(sys.argv[1]) if len(sys.argv) > 1 else 3
IMAGES = int(sys.argv[2]) if len(sys.argv) > 2 else 512


class Net:
    def __init__(self, name):
        self.name, self.layers = name, []   # (name, macs, inputs: list of layer indices it depends on, input elements)

    def add(self, name, macs, deps, in_elems):
        self.layers.append((name, macs, list(deps), in_elems))
        return len(self.layers) - 1

    def cones(self):
        n = len(self.layers)
        children = [[] for _ in range(n)]
        for i, (_, _, deps, _) in enumerate(self.layers):
            for d in deps:
                children[d].append(i)
        cone = []
        for u in range(n):
            seen, stack = {u}, [u]
            while stack:
                for c in children[stack.pop()]:
                    if c not in seen:
                        seen.add(c)
                        stack.append(c)
            cone.append(sum(self.layers[i][1] for i in seen))
        return cone


def conv(h, w, cin, cout, k, stride=1, groups=1):
    ho, wo = (h + stride - 1) // stride, (w + stride - 1) // stride
    return ho, wo, ho * wo * cout * (cin // groups) * k * k


def resnet(name, blocks, bottleneck, cifar=False):
    net = Net(name)
    if cifar:   # ResNet-20 of the shipped assets: 3x3 stem at 32x32, widths 16/32/64, 1x1 shortcut convs, no pool
        h, w, c = 32, 32, 16
        prev = [net.add("conv1", 32 * 32 * 16 * 3 * 9, [], 3 * 32 * 32)]
        widths = [16, 32, 64]
    else:
        h, w, c = 112, 112, 64
        prev = [net.add("conv1", 112 * 112 * 64 * 3 * 49, [], 3 * 224 * 224)]
        h, w = 56, 56   # max pool
        widths = [64, 128, 256, 512]
    for stage, (count, width) in enumerate(zip(blocks, widths)):
        for b in range(count):
            stride = 2 if stage > 0 and b == 0 else 1
            out = width * 4 if bottleneck else width
            start = prev
            if bottleneck:
                _, _, m = conv(h, w, c, width, 1)
                a = net.add(f"l{stage+1}.{b}.conv1", m, start, c * h * w)
                h2, w2, m = conv(h, w, width, width, 3, stride)
                bb = net.add(f"l{stage+1}.{b}.conv2", m, [a], width * h * w)
                _, _, m = conv(h2, w2, width, out, 1)
                last = net.add(f"l{stage+1}.{b}.conv3", m, [bb], width * h2 * w2)
            else:
                h2, w2, m = conv(h, w, c, width, 3, stride)
                a = net.add(f"l{stage+1}.{b}.conv1", m, start, c * h * w)
                _, _, m = conv(h2, w2, width, width, 3)
                last = net.add(f"l{stage+1}.{b}.conv2", m, [a], width * h2 * w2)
            ends = [last]
            if stride != 1 or c != out:
                _, _, m = conv(h, w, c, out, 1, stride)
                ends.append(net.add(f"l{stage+1}.{b}.downsample", m, start, c * h * w))
            else:
                ends += start   # identity shortcut: the block output also depends on the block input
            prev, h, w, c = ends, h2, w2, out
    net.add("fc", c * (10 if cifar else 1000), prev, c)
    return net


def mobilenet_v2():
    net = Net("MobileNetV2")
    prev = [net.add("features.0", 112 * 112 * 32 * 3 * 9, [], 3 * 224 * 224)]
    h, w, c = 112, 112, 32
    i = 1
    for t, out, n, s in [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]:
        for b in range(n):
            stride = s if b == 0 else 1
            hidden, start, x = c * t, prev, prev
            if t != 1:
                x = [net.add(f"features.{i}.expand", h * w * hidden * c, x, c * h * w)]
            h2, w2, m = conv(h, w, hidden, hidden, 3, stride, groups=hidden)
            x = [net.add(f"features.{i}.dw", m, x, hidden * h * w)]
            x = [net.add(f"features.{i}.project", h2 * w2 * out * hidden, x, hidden * h2 * w2)]
            prev = x + (start if stride == 1 and c == out else [])
            h, w, c, i = h2, w2, out, i + 1
    prev = [net.add("features.18", h * w * 1280 * c, prev, c * h * w)]
    net.add("classifier", 1280 * 1000, prev, 1280)
    return net


def vit_b16():
    net = Net("ViT-B/16")
    tokens, d = 197, 768
    prev = [net.add("patch_embed", 196 * d * 3 * 256, [], 3 * 224 * 224)]
    for b in range(12):
        # residual stream: every layer of the block and after it depends on everything before (attention mixes tokens)
        qkv = net.add(f"b{b}.qkv", tokens * d * 3 * d, prev, tokens * d)
        proj = net.add(f"b{b}.proj", tokens * d * d, [qkv], tokens * d)
        fc1 = net.add(f"b{b}.fc1", tokens * d * 4 * d, [proj] + prev, tokens * d)
        fc2 = net.add(f"b{b}.fc2", tokens * 4 * d * d, [fc1], tokens * 4 * d)
        prev = [fc2, proj] + prev
    net.add("head", d * 1000, prev, d)
    return net


def report(net):
    macs = [l[1] for l in net.layers]
    cone = net.cones()
    full = sum(macs)
    searched = list(range(1, len(macs) - 1))   # default policy: first and last layer fixed at 8 bits
    L = len(searched)
    evals = L * S + S * S * L * (L - 1) // 2
    unit, later = {}, 0
    for u in reversed(searched):
        unit[u] = cone[u] + S * later
        later += cone[u]
    executed = S * sum(unit.values()) + full   # per image, + one full-precision pass per batch
    reference = evals * full
    units = sorted((unit[u] for u in searched for _ in range(S)), reverse=True)
    states = 4 * sum(net.layers[u][3] for u in searched)   # float32 inputs of the searched layers: what the FP pass keeps
    return dict(name=net.name, layers=len(macs), searched=L, full=full, evals=evals, executed=executed, reference=reference,
                ratio=executed / reference, unit_max=units[0], unit_min=units[-1], states=states)


if __name__ == "__main__":
    check = report(resnet("ResNet-20 (check)", [3, 3, 3], False, cifar=True))
    print(f"check against the shipped ResNet-20: {check['layers']} layers, {check['full']:,} MACs/image (bitbudget inspect: 22, 40,813,184), "
          f"executed/reference {check['ratio']:.3f} (bench clado: 0.348 for 1,770 evaluations: {check['evals']:,})")
    nets = [resnet("ResNet-18", [2, 2, 2, 2], False), resnet("ResNet-50", [3, 4, 6, 3], True), mobilenet_v2(), vit_b16()]
    print(f"S = {S} schemes, first/last layer fixed; MACs per image; executed = exact-reuse schedule (+1 FP pass)")
    print("model | quantizable layers | searched | GMACs/image | evaluations/batch | executed GMACs/image | reference GMACs/image | executed/reference | largest/smallest unit | FP states MB/image | executed TMACs for %d images" % IMAGES)
    for net in nets:
        r = report(net)
        print(f"{r['name']} | {r['layers']} | {r['searched']} | {r['full']/1e9:.3f} | {r['evals']:,} | {r['executed']/1e9:,.1f} | {r['reference']/1e9:,.1f} | "
              f"{r['ratio']:.3f} | {r['unit_max']/r['unit_min']:.0f}x | {r['states']/1e6:.1f} | {r['executed']*IMAGES/1e12:,.1f}")
