#!/usr/bin/env bash
# The trainer's GPU checks, for a machine with an NVIDIA GPU and PyTorch 2.11.0 in its Python
# but no Rust toolchain: build `nasop-trainer` elsewhere (`make build`), carry
# target/release/nasop-trainer, and run this from the repository root. Writes to ${OUT:-gpu-out}/:
#   info.json       libtorch's view of the device
#   bench.jsonl     images/s of nasop-trainer vs PyTorch eager (bf16, channels-last), per child
#   nb201.json      the NAS-Bench-201 optimum trained on the full CIFAR-10 for a few epochs
# Usage: scripts/gpu-check.sh CIFAR10_DIR [EPOCHS]
set -euo pipefail
data=${1:?usage: scripts/gpu-check.sh CIFAR10_DIR [EPOCHS]}
epochs=${2:-3}
out=${OUT:-gpu-out}
mkdir -p "$out"
bin=${NASOP_TRAINER:-target/release/nasop-trainer}
python=${PYTHON:-python3}
torch_lib=$("$python" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
export LD_LIBRARY_PATH="$torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
"$python" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name(0))'
"$bin" info | tee "$out/info.json"
timeout 300 "$python" trainer/benches/bench_trainer.py --trainer "$bin" --data "$data" --device cuda \
    --batch-size 256 --steps 60 --repeats 2 --examples 20000 --json-out "$out/bench.jsonl" || echo "bench: exit $?"
timeout 400 "$bin" train -g nb201-optimum --dataset-format cifar10 --data "$data" --device cuda \
    --epochs "$epochs" --batch-size 256 --learning-rate 0.1 --test --seed 1 \
    --termination-log "$out/nb201.termination-log" --result "$out/nb201.json" || echo "train: exit $?"
