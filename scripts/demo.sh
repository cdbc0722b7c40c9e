#!/usr/bin/env bash
# The main job, at this stage of the project: the search-space tool on the example searches
# and the published genotypes, the sizes of the published children, and one child trained on the
# Fashion-MNIST subset shipped in data/. (The real local search, `nasop run`, replaces this once
# it lands.)
set -euo pipefail
bin=${NASOP_BIN:?NASOP_BIN must point at the directory holding nasop and nasop-trainer}
cd "$(dirname "$0")/.."

step() { printf '\n== %s\n' "$*"; }

step "Checking the example ArchitectureSearch manifests"
"$bin/nasop" validate examples/*.yaml

for manifest in examples/*.yaml; do
    step "Search space of $manifest"
    "$bin/nasop" space info --manifest "$manifest"
done

for name in nasnet-a mnasnet-a1 nb201-optimum; do
    step "Published genotype $name"
    "$bin/nasop" space check "$name"
done

step "Five children sampled uniformly from the NAS-Bench-201 space (seed 1)"
"$bin/nasop" space sample --manifest examples/nb201-evolution.yaml -n 5 --seed 1

step "Three single-decision mutants of the NAS-Bench-201 optimum (as regularized evolution makes them)"
"$bin/nasop" space mutate nb201-optimum -n 3 --seed 1

step "The trainer against libtorch"
"$bin/nasop-trainer" info

step "Parameters and multiply-adds of the published children (papers: 3.3M; 3.9M and 312M; 1.07M and 153M)"
sizes() {
    "$bin/nasop-trainer" summary "$@" | python3 -c 'import json, sys
d = json.load(sys.stdin)
print("%-44s %11s parameters %13s multiply-adds" % (sys.argv[1], format(d["params"], ","), format(d["macs"], ",")))' "$*"
}
sizes -g nasnet-a --cells-per-stage 6 --filters 32
sizes -g mnasnet-a1 --input-size 224 --classes 1000
sizes -g nb201-optimum

out=${NASOP_DEMO_OUT:-nasop-runs/demo}
mkdir -p "$out"
step "Training the NAS-Bench-201 optimum cell (N=2, C=16) for 2 epochs on the shipped Fashion-MNIST subset"
"$bin/nasop-trainer" train -g nb201-optimum --cells-per-stage 2 --filters 16 \
    --dataset-format fashion-mnist --data data/fashion-mnist --epochs 2 --learning-rate 0.1 \
    --crop-padding 2 --test --seed 1 \
    --termination-log "$out/termination-log" --result "$out/result.json" \
    --checkpoint "$out/child.safetensors" >/dev/null
python3 - "$out/result.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print(f"validation accuracy {100 * r['validationAccuracy']:.1f}%, test accuracy {100 * r['testAccuracy']:.1f}% "
      f"({r['params']:,} parameters, {r['macs']:,} multiply-adds, {r['samplesPerSecond']:.0f} images/s on {r['device']})")
PY
echo "result: $out/result.json, weights: $out/child.safetensors"
