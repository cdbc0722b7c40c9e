#!/usr/bin/env bash
# The main job, at this stage of the project: the search-space tool on the example searches
# and the published genotypes, and a libtorch self-test of the trainer. (The real local search,
# `nasop run`, replaces this once it lands.)
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
