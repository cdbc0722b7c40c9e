"""PyTorch eager reference of nasop-trainer's training step, for `make bench-trainer`.

Builds the same child network as nasop-trainer (the genotype JSON that `nasop-trainer summary`
prints; same layers, same parameter count, checked by the caller) and trains it with the same
recipe: SGD with Nesterov momentum 0.9, weight decay 5e-4 on conv/linear weights only,
gradient-norm clip 5, cosine learning rate, batches of CIFAR-10 held in memory with random crop
(padding 4) and horizontal flip. Prints one JSON line: params, steps, seconds, images/s.
"""

import argparse
import json
import math
import os
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


# ---------------------------------------------------------------- layers

def conv(cin, cout, k, stride=1, groups=1, bias=False, padding=None, dilation=1):
    if isinstance(k, int):
        k = (k, k)
    if padding is None:
        padding = ((k[0] - 1) // 2, (k[1] - 1) // 2)
    return nn.Conv2d(cin, cout, k, stride, padding, dilation, groups, bias)


class ReluConvBn(nn.Sequential):
    def __init__(self, cin, cout, k, stride, padding, dilation=1):
        super().__init__(nn.ReLU(), conv(cin, cout, k, stride, padding=padding, dilation=dilation),
                         nn.BatchNorm2d(cout))


class ConvBn(nn.Sequential):
    def __init__(self, cin, cout, k, stride=1, groups=1, relu=False, momentum=0.1, eps=1e-5):
        layers = [conv(cin, cout, k, stride, groups), nn.BatchNorm2d(cout, eps=eps, momentum=momentum)]
        if relu:
            layers.append(nn.ReLU())
        super().__init__(*layers)


def avg_pool3(x, stride):
    return F.avg_pool2d(x, 3, stride, 1, count_include_pad=False)


# ---------------------------------------------------------------- NAS-Bench-201

NB201_OPS = ["none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3"]


class Nb201Cell(nn.Module):
    def __init__(self, edges, c):
        super().__init__()
        self.kinds = edges
        self.ops = nn.ModuleList()
        for op in edges:
            if op == "nor_conv_1x1":
                self.ops.append(ReluConvBn(c, c, 1, 1, (0, 0)))
            elif op == "nor_conv_3x3":
                self.ops.append(ReluConvBn(c, c, 3, 1, (1, 1)))
            else:
                self.ops.append(nn.Identity())

    def forward(self, x):
        nodes = [x]
        e = 0
        for to in range(1, 4):
            total = None
            for j in range(to):
                kind, op = self.kinds[e], self.ops[e]
                e += 1
                src = nodes[j]
                if kind == "none":
                    continue
                if src is None:
                    src = torch.zeros_like(x)
                y = avg_pool3(src, 1) if kind == "avg_pool_3x3" else op(src)
                total = y if total is None else total + y
            nodes.append(total)
        return nodes[3] if nodes[3] is not None else torch.zeros_like(x)


class Nb201Reduction(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.a = ReluConvBn(cin, cout, 3, 2, (1, 1))
        self.b = ReluConvBn(cout, cout, 3, 1, (1, 1))
        self.shortcut = conv(cin, cout, 1)

    def forward(self, x):
        return self.b(self.a(x)) + self.shortcut(F.avg_pool2d(x, 2, 2))


class Nb201Net(nn.Module):
    def __init__(self, g, cin, classes, c=16, n=5):
        super().__init__()
        edges = [op for node in g["nodes"] for op in node]
        self.stem = nn.Sequential(conv(cin, c, 3), nn.BatchNorm2d(c))
        layers = []
        for stage in range(3):
            if stage > 0:
                layers.append(Nb201Reduction(c, 2 * c))
                c *= 2
            layers += [Nb201Cell(edges, c) for _ in range(n)]
        self.layers = nn.Sequential(*layers)
        self.last = nn.BatchNorm2d(c)
        self.classifier = nn.Linear(c, classes)

    def forward(self, x):
        h = F.relu(self.last(self.layers(self.stem(x))))
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(h, 1), 1))


# ---------------------------------------------------------------- NASNet

class SepStack(nn.Module):
    def __init__(self, cin, cout, k, stride):
        super().__init__()
        units = []
        c = cin
        for i in range(2):
            s = stride if i == 0 else 1
            units.append(nn.Sequential(nn.ReLU(), conv(c, c, k, s, groups=c), conv(c, cout, 1), nn.BatchNorm2d(cout)))
            c = cout
        self.units = nn.Sequential(*units)

    def forward(self, x):
        return self.units(x)


class Pool(nn.Module):
    def __init__(self, kind, k, stride, cin, cout):
        super().__init__()
        self.kind, self.k, self.stride = kind, k, stride
        self.project = ConvBn(cin, cout, 1) if cin != cout else None

    def forward(self, x):
        if self.kind == "avg":
            h = avg_pool3(x, self.stride)
        else:
            h = F.max_pool2d(x, self.k, self.stride, self.k // 2)
        return self.project(h) if self.project is not None else h


def nasnet_op(op, cin, cout, stride):
    if op == "identity" and stride == 1 and cin == cout:
        return nn.Identity()
    if op in ("identity", "conv_1x1"):
        return ReluConvBn(cin, cout, 1, stride, (0, 0))
    if op == "conv_3x3":
        return ReluConvBn(cin, cout, 3, stride, (1, 1))
    if op == "dil_conv_3x3":
        return ReluConvBn(cin, cout, 3, stride, (2, 2), dilation=2)
    if op in ("conv_1x3_3x1", "conv_1x7_7x1"):
        k = 3 if op == "conv_1x3_3x1" else 7
        return nn.Sequential(ReluConvBn(cin, cout, (1, k), stride, (0, k // 2)),
                             ReluConvBn(cout, cout, (k, 1), 1, (k // 2, 0)))
    if op == "avg_pool_3x3":
        return Pool("avg", 3, stride, cin, cout)
    if op.startswith("max_pool_"):
        return Pool("max", int(op[-1]), stride, cin, cout)
    if op.startswith("sep_conv_"):
        return SepStack(cin, cout, int(op[-1]), stride)
    raise ValueError(op)


class FactorizedReduction(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.stride = stride
        if stride == 1:
            self.project = ConvBn(cin, cout, 1)
        else:
            self.even = conv(cin, cout // 2, 1)
            self.odd = conv(cin, cout - cout // 2, 1)
            self.bn = nn.BatchNorm2d(cout)

    def forward(self, x):
        if self.stride == 1:
            return self.project(x)
        even = x[:, :, ::2, ::2]
        odd = F.pad(x, (0, 1, 0, 1))[:, :, 1::2, 1::2]
        return self.bn(torch.cat([self.even(even), self.odd(odd)], 1))


def default_concat(blocks):
    used = {b["inputA"] for b in blocks} | {b["inputB"] for b in blocks}
    return [i for i in range(2, 2 + len(blocks)) if i not in used]


class NasnetCell(nn.Module):
    """Same structure as nasop's: squeeze inputs, blocks, concat (shapes tracked as (c, h))."""

    def __init__(self, cell, reduction, prev, cur, f):
        super().__init__()
        self.squeeze_cur = ReluConvBn(cur[0], f, 1, 1, (0, 0))
        if prev[1] != cur[1]:
            self.prev_mode, self.prev = "reduce", FactorizedReduction(prev[0], f, 2)
        elif prev[0] != f:
            self.prev_mode, self.prev = "squeeze", ReluConvBn(prev[0], f, 1, 1, (0, 0))
        else:
            self.prev_mode, self.prev = "asis", nn.Identity()
        h = cur[1]
        states = [(f, h), (f, h)]
        self.blocks = []
        self.ops = nn.ModuleList()
        for b in cell["blocks"]:
            outs = []
            for side in ("A", "B"):
                i = b["input" + side]
                stride = 2 if reduction and i < 2 else 1
                self.ops.append(nasnet_op(b["op" + side], states[i][0], f, stride))
                outs.append((f, (states[i][1] - 1) // stride + 1))
            comb = b.get("combine", "add")
            self.blocks.append((b["inputA"], b["inputB"], comb, b["opA"] == "identity", b["opB"] == "identity"))
            states.append((outs[0][0] + (outs[1][0] if comb == "concat" else 0), outs[0][1]))
        last = states[-1]
        self.concat = cell.get("concat") or default_concat(cell["blocks"])
        self.fix = nn.ModuleDict()
        out_c = 0
        for i in self.concat:
            c, h = states[i]
            if h != last[1] or c != last[0]:
                self.fix[str(i)] = FactorizedReduction(c, last[0], 2 if h != last[1] else 1)
                out_c += last[0]
            else:
                out_c += c
        self.out = (out_c, last[1])

    def forward(self, prev, cur):
        if self.prev_mode == "reduce":
            prev = self.prev(F.relu(prev))
        else:
            prev = self.prev(prev)
        states = [prev, self.squeeze_cur(cur)]
        for k, (a, b, comb, _, _) in enumerate(self.blocks):
            ya = self.ops[2 * k](states[a])
            yb = self.ops[2 * k + 1](states[b])
            states.append(ya + yb if comb == "add" else torch.cat([ya, yb], 1))
        return torch.cat([self.fix[str(i)](states[i]) if str(i) in self.fix else states[i] for i in self.concat], 1)


class NasnetNet(nn.Module):
    def __init__(self, g, cin, size, classes, n=2, f=32):
        super().__init__()
        self.stem = ConvBn(cin, 3 * f, 3)
        prev = cur = (3 * f, size)
        self.cells = nn.ModuleList()
        for stage in range(3):
            kinds = []
            if stage > 0:
                f *= 2
                kinds.append("reduction")
            kinds += ["normal"] * n
            for kind in kinds:
                cell = NasnetCell(g[kind], kind == "reduction", prev, cur, f)
                self.cells.append(cell)
                prev, cur = cur, cell.out
        self.classifier = nn.Linear(cur[0], classes)

    def forward(self, x):
        prev = cur = self.stem(x)
        for cell in self.cells:
            prev, cur = cur, cell(prev, cur)
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(F.relu(cur), 1), 1))


# ---------------------------------------------------------------- MnasNet

EXPANSION = {"conv": 1, "dconv": 1, "mbconv3": 3, "mbconv6": 6}
MNAS_BN = dict(momentum=0.01, eps=1e-3)


class Se(nn.Module):
    def __init__(self, c, reduced):
        super().__init__()
        self.reduce = nn.Conv2d(c, reduced, 1)
        self.expand = nn.Conv2d(reduced, c, 1)

    def forward(self, x):
        s = F.adaptive_avg_pool2d(x, 1)
        return x * torch.sigmoid(self.expand(F.relu(self.reduce(s))))


class MnasLayer(nn.Module):
    def __init__(self, cin, op, k, stride, se, skip, cout):
        super().__init__()
        e = EXPANSION[op]
        if op == "conv":
            self.expand = None
            self.main = ConvBn(cin, cout, k, stride, relu=True, **MNAS_BN)
            mid = cout
        else:
            wide = cin * e
            self.expand = ConvBn(cin, wide, 1, relu=True, **MNAS_BN) if e > 1 else None
            self.main = ConvBn(wide, wide, k, stride, groups=wide, relu=True, **MNAS_BN)
            mid = wide
        self.se = Se(mid, max(1, int(math.floor(cin * se)))) if se > 0 else None
        self.project = None if op == "conv" else ConvBn(mid, cout, 1, **MNAS_BN)
        same = stride == 1 and cin == cout
        self.stride = stride
        self.skip_project = None
        if skip == "none" or (skip == "identity" and not same):
            self.skip = "none"
        elif same:
            self.skip = "identity"
        else:
            self.skip = "pool"
            if cin != cout:
                self.skip_project = ConvBn(cin, cout, 1, **MNAS_BN)

    def forward(self, x):
        h = self.expand(x) if self.expand is not None else x
        h = self.main(h)
        if self.se is not None:
            h = self.se(h)
        if self.project is not None:
            h = self.project(h)
        if self.skip == "identity":
            return h + x
        if self.skip == "pool":
            p = avg_pool3(x, self.stride) if self.stride > 1 else x
            return h + (self.skip_project(p) if self.skip_project is not None else p)
        return h


class MnasnetNet(nn.Module):
    def __init__(self, g, cin, classes, head=1280, dropout=0.2):
        super().__init__()
        blocks = g["blocks"]
        self.stem = ConvBn(cin, blocks[0]["filtersIn"], 3, 2, relu=True, **MNAS_BN)
        layers = []
        c = blocks[0]["filtersIn"]
        for b in blocks:
            for i in range(b["layers"]):
                layers.append(MnasLayer(c, b["convOp"], b["kernel"], b["stride"] if i == 0 else 1,
                                        b["seRatio"], b["skip"], b["filters"]))
                c = b["filters"]
        self.layers = nn.Sequential(*layers)
        self.head = ConvBn(c, head, 1, relu=True, **MNAS_BN)
        self.dropout = dropout
        self.classifier = nn.Linear(head, classes)

    def forward(self, x):
        h = self.head(self.layers(self.stem(x)))
        h = F.dropout(torch.flatten(F.adaptive_avg_pool2d(h, 1), 1), self.dropout, self.training)
        return self.classifier(h)


# ---------------------------------------------------------------- data and training

def load_cifar(folder, n):
    path = os.path.join(folder, "data_batch_1.bin")
    if not os.path.exists(path):
        path = os.path.join(folder, "cifar-10-batches-bin", "data_batch_1.bin")
    raw = np.fromfile(path, dtype=np.uint8).reshape(-1, 3073)[:n]
    return torch.from_numpy(raw[:, 1:].reshape(-1, 3, 32, 32).copy()), torch.from_numpy(raw[:, 0].astype(np.int64))


def augment(images, generator):
    b = images.shape[0]
    padded = F.pad(images, (4, 4, 4, 4))
    dy = torch.randint(0, 9, (b,), generator=generator)
    dx = torch.randint(0, 9, (b,), generator=generator)
    flip = torch.randint(0, 2, (b,), generator=generator).bool()
    ar = torch.arange(32)
    rows = dy[:, None] + ar[None, :]
    cols = torch.where(flip[:, None], 31 - ar[None, :], ar[None, :]) + dx[:, None]
    return padded[torch.arange(b)[:, None, None, None], torch.arange(3)[None, :, None, None],
                  rows[:, None, :, None], cols[:, None, None, :]]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--genotype-json", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--examples", type=int, default=5000)
    p.add_argument("--cells-per-stage", type=int)
    p.add_argument("--filters", type=int)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--threads", type=int)
    p.add_argument("--device", default="cpu")
    p.add_argument("--bf16", action="store_true")
    p.add_argument("--channels-last", action="store_true")
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    g = json.loads(a.genotype_json)
    (space, body), = g.items()
    if space == "nb201":
        net = Nb201Net(body, 3, 10, a.filters or 16, a.cells_per_stage or 5)
    elif space == "nasnet":
        net = NasnetNet(body, 3, 32, 10, a.cells_per_stage or 2, a.filters or 32)
    else:
        net = MnasnetNet(body, 3, 10)
    dev = torch.device(a.device)
    net = net.to(dev)
    if a.channels_last:
        net = net.to(memory_format=torch.channels_last)
    params = sum(t.numel() for t in net.parameters())
    decay = [t for n, t in net.named_parameters() if t.dim() > 1]
    no_decay = [t for n, t in net.named_parameters() if t.dim() <= 1]
    opt = torch.optim.SGD([{"params": decay, "weight_decay": 5e-4}, {"params": no_decay, "weight_decay": 0.0}],
                          lr=0.05, momentum=0.9, nesterov=True)
    images, labels = load_cifar(a.data, a.examples)
    mean = (images.float() / 255).mean(dim=(0, 2, 3)).view(1, 3, 1, 1)
    std = (images.float() / 255).std(dim=(0, 2, 3)).view(1, 3, 1, 1)
    gen = torch.Generator().manual_seed(0)
    net.train()
    steps_per_epoch = a.examples // a.batch_size
    start = time.perf_counter()
    for step in range(a.steps):
        if step % steps_per_epoch == 0:
            order = torch.randperm(a.examples, generator=gen)
        idx = order[(step % steps_per_epoch) * a.batch_size:(step % steps_per_epoch + 1) * a.batch_size]
        x = (augment(images[idx], gen).float() / 255 - mean) / std
        y = labels[idx]
        x, y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
        if a.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        for group in opt.param_groups:
            group["lr"] = 0.05 * 0.5 * (1 + math.cos(math.pi * step / a.steps))
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=a.bf16):
            loss = F.cross_entropy(net(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
        opt.step()
    final_loss = loss.item()
    seconds = time.perf_counter() - start
    print(json.dumps({"params": params, "steps": a.steps, "seconds": seconds,
                      "imagesPerSecond": a.steps * a.batch_size / seconds, "finalLoss": final_loss}))


if __name__ == "__main__":
    main()
