#!/usr/bin/env bash
# Manual smoke test: build (or reuse) the binaries, start etcd and
# kube-apiserver on free loopback ports with throw-away certificates, wait
# for /readyz, list namespaces, then stop both and clean up.
#   bash tests/apiserver/smoke.sh          (needs go, openssl, curl, python3)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
mapfile -t bins < <(bash "$here/build.sh")
apiserver="${bins[0]}"
etcd="${bins[1]}"

work="$(mktemp -d "${TMPDIR:-/tmp}/nasop-apiserver.XXXXXX")"
etcd_pid="" api_pid=""
cleanup() {
    [[ -n "$api_pid" ]] && kill "$api_pid" 2>/dev/null && wait "$api_pid" 2>/dev/null || true
    [[ -n "$etcd_pid" ]] && kill "$etcd_pid" 2>/dev/null && wait "$etcd_pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# --- certificates ---------------------------------------------------------
cd "$work"
openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 1 \
    -subj "/CN=nasop-test-ca" 2>/dev/null
sign() { # name subject extensions
    openssl req -newkey rsa:2048 -nodes -keyout "$1.key" -out "$1.csr" -subj "$2" 2>/dev/null
    printf '%b' "$3" > "$1.ext"
    openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial \
        -out "$1.crt" -days 1 -extfile "$1.ext" 2>/dev/null
}
sign server "/CN=kube-apiserver" \
    "subjectAltName=IP:127.0.0.1,DNS:localhost,IP:10.0.0.1,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc\nextendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
sign admin "/O=system:masters/CN=nasop-admin" \
    "extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out sa.key 2>/dev/null
openssl pkey -in sa.key -pubout -out sa.pub

# --- etcd -----------------------------------------------------------------
# Port 0: etcd picks free ports and prints the client URL in its ready line.
"$etcd" --data-dir "$work/etcd" \
    --listen-client-urls http://127.0.0.1:0 \
    --listen-peer-urls http://127.0.0.1:0 \
    --unsafe-no-fsync > etcd.out 2> etcd.log &
etcd_pid=$!
for _ in $(seq 100); do grep -q '^etcd ready' etcd.out && break; sleep 0.1; done
grep '^etcd ready' etcd.out || { cat etcd.log; exit 1; }
etcd_url="$(sed -n 's/^etcd ready: client-urls=//p' etcd.out)"

# --- kube-apiserver -------------------------------------------------------
port="$(free_port)"
t0=$(date +%s.%N)
"$apiserver" \
    --etcd-servers "$etcd_url" \
    --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$port" \
    --cert-dir "$work/certs" \
    --tls-cert-file server.crt --tls-private-key-file server.key \
    --client-ca-file ca.crt \
    --service-account-issuer https://kubernetes.default.svc \
    --service-account-key-file sa.pub \
    --service-account-signing-key-file sa.key \
    --service-cluster-ip-range 10.0.0.0/24 \
    --authorization-mode RBAC \
    --disable-admission-plugins ServiceAccount \
    --endpoint-reconciler-type none \
    > apiserver.log 2>&1 &
api_pid=$!

curl_api() { curl -sS --cacert ca.crt --cert admin.crt --key admin.key "https://127.0.0.1:$port$1"; }
ready=""
for _ in $(seq 600); do
    if [[ "$(curl_api /readyz 2>/dev/null)" == ok ]]; then ready=1; break; fi
    kill -0 "$api_pid" 2>/dev/null || break
    sleep 0.1
done
if [[ -z "$ready" ]]; then
    echo "kube-apiserver did not become ready" >&2
    tail -50 apiserver.log >&2
    exit 1
fi
echo "kube-apiserver ready on https://127.0.0.1:$port after $(python3 -c "print(round($(date +%s.%N) - $t0, 2))")s"
curl_api /version; echo
curl_api /api/v1/namespaces | python3 -c 'import json,sys; print("namespaces:", [i["metadata"]["name"] for i in json.load(sys.stdin)["items"]])'
curl_api /api/v1/namespaces/default/services | python3 -c 'import json,sys; print("services:", [i["metadata"]["name"] for i in json.load(sys.stdin)["items"]])'
grep -E '^E[0-9]{4}' apiserver.log || true
echo "smoke test OK"
