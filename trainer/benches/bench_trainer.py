"""`make bench-trainer`: images/s of nasop-trainer against the PyTorch eager reference.

For each child (NB201 optimum cell; MnasNet-A1 at 32x32; NASNet-A 2 @ 192) both trainers run the
same number of steps of the same recipe on the same in-memory CIFAR-10 examples, with the same
batch size, threads and device; the parameter counts must agree (same network). Runs alternate
between the two; the best run of each (the one least disturbed by other work on the machine) is
compared, and the medians are printed beside it.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

CHILDREN = [
    ("NB201 optimum", ["-g", "nb201-optimum"]),
    ("MnasNet-A1 @ 32x32", ["-g", "mnasnet-a1"]),
    ("NASNet-A 2 @ 192", ["-g", "nasnet-a", "--cells-per-stage", "2", "--filters", "8"]),
]


def run_json(cmd, env=None):
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
    text = out.stdout.strip()
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return json.loads(text.splitlines()[-1])


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--trainer", required=True, help="path of the nasop-trainer binary")
    p.add_argument("--data", required=True, help="CIFAR-10 binary folder")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--examples", type=int, default=3000)
    p.add_argument("--only", help="run only children whose name contains this")
    p.add_argument("--json-out", help="append one JSON line per child here")
    a = p.parse_args()
    cuda = a.device.startswith("cuda")
    rows = []
    for name, genotype_args in CHILDREN:
        if a.only and a.only.lower() not in name.lower():
            continue
        summary = run_json([a.trainer, "summary", *genotype_args])
        net_flags = []
        if "--cells-per-stage" in genotype_args:
            i = genotype_args.index("--cells-per-stage")
            net_flags += genotype_args[i:i + 4]
        eager_cmd = [sys.executable, os.path.join(HERE, "eager_reference.py"), "--genotype-json",
                     json.dumps(summary["genotypeJson"]), "--data", a.data, "--examples", str(a.examples),
                     "--batch-size", str(a.batch_size), "--steps", str(a.steps), "--threads", str(a.threads),
                     "--device", a.device, *net_flags] + (["--bf16", "--channels-last"] if cuda else [])
        nasop_cmd = [a.trainer, "train", *genotype_args, "--dataset-format", "cifar10", "--data", a.data,
                     "--train-examples", str(a.examples - 200), "--validation-examples", "200",
                     "--batch-size", str(a.batch_size), "--max-steps", str(a.steps), "--epochs", "1",
                     "--threads", str(a.threads), "--device", a.device, "--quiet", "--termination-log",
                     os.devnull]
        eager, nasop = [], []
        for _ in range(a.repeats):
            e = run_json(eager_cmd)
            if e["params"] != summary["params"]:
                sys.exit(f"{name}: eager reference has {e['params']} parameters, nasop {summary['params']}: not the same network")
            eager.append(e["imagesPerSecond"])
            n = run_json(nasop_cmd)
            nasop.append(n["samplesPerSecond"])
        row = {"child": name, "params": summary["params"], "macs": summary["macs"], "device": a.device,
               "threads": a.threads, "batchSize": a.batch_size, "steps": a.steps,
               "nasopImagesPerSecond": max(nasop), "eagerImagesPerSecond": max(eager),
               "nasopMedian": statistics.median(nasop), "eagerMedian": statistics.median(eager),
               "nasopRuns": nasop, "eagerRuns": eager}
        row["ratio"] = row["nasopImagesPerSecond"] / row["eagerImagesPerSecond"]
        rows.append(row)
        print(f"{name:22} params {row['params']:>9,}  nasop {row['nasopImagesPerSecond']:9.1f} img/s  "
              f"eager {row['eagerImagesPerSecond']:9.1f} img/s  ratio {row['ratio']:.3f}  "
              f"(medians {row['nasopMedian']:.1f} / {row['eagerMedian']:.1f})", flush=True)
        if a.json_out:
            with open(a.json_out, "a") as f:
                f.write(json.dumps(row) + "\n")
    worst = min(r["ratio"] for r in rows)
    print(f"lowest ratio nasop/eager: {worst:.3f} (goal >= 1.0)")


if __name__ == "__main__":
    main()
