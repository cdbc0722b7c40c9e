#!/usr/bin/env bash
# The main job: a quick look at the search spaces and the published children, then a real local
# search (`nasop run`) on the Fashion-MNIST subset shipped in data/.
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

out=${NASOP_DEMO_OUT:-nasop-runs/demo-fashion-mnist}
step "A real search: PPO over NAS-Bench-201 cells on the shipped Fashion-MNIST subset, latency measured here"
# Run again to resume an interrupted search; remove $out to start over.
"$bin/nasop" run examples/demo-fashion-mnist.yaml --state-dir "$out" --trainer "$bin/nasop-trainer"
python3 - "$out/summary.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
best = s["best"][0]
print(f"best child (trial {best['id']}): reward {best['state']['reward']:.4f}, "
      f"validation accuracy {100 * best['state']['metrics']['validationAccuracy']:.1f}%, "
      f"latency {best['state']['latencyMs']:.2f} ms; median child's reward {s['medianReward']:.4f}")
PY
echo "state, best genotype and summary: $out (nasop results $out prints the summary again)"
