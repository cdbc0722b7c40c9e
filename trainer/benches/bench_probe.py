"""`make bench-probe`: how stable and how faithful `nasop-trainer probe` is on this machine.

- Stability: 5 probes of the same child (NB201 optimum, 32x32, batch 1, --threads 1); prints
  the spread of the medians, max/min - 1 (goal <= 3%).
- Fidelity: 200 random NB201 cells (seeded) probed here; prints the Spearman correlation of their
  medians with the latency measured on a Xeon Gold 6240 (`gold_6240` of nb201_latency_ms.csv;
  a different CPU, so only the ranking can agree; goal >= 0.8).
The last line is JSON.
"""

import argparse
import csv
import json
import os
import random
import subprocess


def probe(trainer, genotype, threads, repeats, warmup):
    out = subprocess.run([trainer, "probe", "-g", genotype, "--input-size", "32", "--classes", "10",
                          "--threads", str(threads), "--repeats", str(repeats), "--warmup", str(warmup),
                          "--termination-log", os.devnull], check=True, capture_output=True, text=True)
    return json.loads(out.stdout)["latency"]["medianMs"]


def ranks(xs):
    order = sorted(range(len(xs)), key=lambda i: xs[i])
    r = [0.0] * len(xs)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and xs[order[j + 1]] == xs[order[i]]:
            j += 1
        for k in order[i:j + 1]:
            r[k] = (i + j) / 2 + 1
        i = j + 1
    return r


def spearman(a, b):
    ra, rb = ranks(a), ranks(b)
    n = len(a)
    ma, mb = sum(ra) / n, sum(rb) / n
    cov = sum((x - ma) * (y - mb) for x, y in zip(ra, rb))
    va = sum((x - ma) ** 2 for x in ra)
    vb = sum((y - mb) ** 2 for y in rb)
    return cov / (va * vb) ** 0.5


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--trainer", required=True)
    p.add_argument("--table", required=True, help="nb201_latency_ms.csv")
    p.add_argument("--column", default="gold_6240")
    p.add_argument("--cells", type=int, default=200)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()

    medians = [probe(a.trainer, "nb201-optimum", a.threads, 50, 10) for _ in range(5)]
    spread = max(medians) / min(medians) - 1
    print(f"stability: 5 probes of the NB201 optimum: medians {', '.join(f'{m:.3f}' for m in medians)} ms; "
          f"spread {100 * spread:.2f}% (goal <= 3%)", flush=True)

    rows = list(csv.DictReader(open(a.table)))
    rng = random.Random(a.seed)
    sample = rng.sample(rows, a.cells)
    here = [probe(a.trainer, r["arch_str"], a.threads, 20, 5) for r in sample]
    there = [float(r[a.column]) for r in sample]
    rho = spearman(here, there)
    print(f"fidelity: {a.cells} random NB201 cells, Spearman of this machine's medians vs {a.column}: "
          f"{rho:.4f} (goal >= 0.8)")
    print(json.dumps({"stabilitySpread": spread, "stabilityMediansMs": medians, "fidelitySpearman": rho,
                      "cells": a.cells, "column": a.column, "threads": a.threads}))


if __name__ == "__main__":
    main()
