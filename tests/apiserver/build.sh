#!/usr/bin/env bash
# Build a real kube-apiserver, a real etcd and kubectl from Go modules for nasop's
# integration tests. Needs only `go` and the Go module proxy.
#
#   bash tests/apiserver/build.sh        # from any directory
#
# Binaries go to ${NASOP_CACHE:-$HOME/.cache/nasop}/apiserver/<k8s version>/.
# The build is skipped when both binaries exist and the stamp file records
# the same hash of go.mod, go.sum, this script, the cmd/ sources and the Go
# version.
# Progress goes to stderr; stdout gets exactly three lines: the absolute paths
# of kube-apiserver, etcd and kubectl.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

if ! command -v go >/dev/null 2>&1; then
    echo "build.sh: error: 'go' not found in PATH; install Go >= 1.24 to build kube-apiserver and etcd" >&2
    exit 1
fi

kube_version="$(awk '$1 == "k8s.io/kubernetes" && $2 ~ /^v/ {print $2; exit}' "$here/go.mod")"
etcd_version="$(awk '$1 == "go.etcd.io/etcd/server/v3" && $2 ~ /^v/ {print $2; exit}' "$here/go.mod")"
if [[ -z "$kube_version" ]]; then
    echo "build.sh: error: cannot find k8s.io/kubernetes version in $here/go.mod" >&2
    exit 1
fi

out="${NASOP_CACHE:-$HOME/.cache/nasop}/apiserver/$kube_version"
stamp="$out/.stamp"
go_version="$(go env GOVERSION)"

hash="$(
    cd "$here"
    { cat go.mod go.sum build.sh cmd/kube-apiserver/main.go cmd/etcd/main.go cmd/kubectl/main.go; echo "$go_version"; } | sha256sum | cut -d' ' -f1
)"

up_to_date() {
    [[ -x "$out/kube-apiserver" && -x "$out/etcd" && -x "$out/kubectl" && -f "$stamp" && "$(cat "$stamp")" == "$hash" ]]
}

mkdir -p "$out"

# Serialise concurrent builds (e.g. several test binaries calling this at once).
if command -v flock >/dev/null 2>&1; then
    exec 9>"$out/.lock"
    flock 9
fi

if up_to_date; then
    echo "build.sh: up to date (kubernetes $kube_version, etcd $etcd_version) in $out" >&2
else
    echo "build.sh: building kube-apiserver $kube_version and etcd $etcd_version with $go_version into $out" >&2
    echo "build.sh: with empty Go caches this downloads ~0.7 GB of modules and takes ~6-7 min on 2 cores" >&2
    tmp="$(mktemp -d "$out/.build.XXXXXX")"
    trap 'rm -rf "$tmp"' EXIT

    minor="${kube_version#v1.}"
    minor="${minor%%.*}"
    ldflags="-s -w"
    for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
        ldflags+=" -X $pkg.gitVersion=$kube_version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
    done

    start=$(date +%s)
    (
        cd "$here"
        CGO_ENABLED=0 go build -trimpath -buildvcs=false -ldflags "$ldflags" -o "$tmp/" ./cmd/kube-apiserver ./cmd/etcd ./cmd/kubectl
    )
    mv -f "$tmp/kube-apiserver" "$out/kube-apiserver"
    mv -f "$tmp/etcd" "$out/etcd"
    mv -f "$tmp/kubectl" "$out/kubectl"
    echo "$hash" > "$stamp"
    echo "build.sh: built in $(( $(date +%s) - start ))s" >&2
fi

echo "$out/kube-apiserver"
echo "$out/etcd"
echo "$out/kubectl"
