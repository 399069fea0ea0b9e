#!/usr/bin/env bash
# Runs testssl.sh against waakvlamd with mutual TLS and prints every finding rated LOW or worse.
#
#   bash Benchmarks/testssl.sh
#
# A copy of Config/ on a free port gets a development PKI (`waakvlam pki init`); waakvlamd
# serves it; testssl (Debian package testssl.sh, 3.0.x, which has no client-certificate
# option) runs with an openssl wrapper that presents an organisation's certificate on every
# s_client call, and with the development CA added as trusted (--add-ca).
set -euo pipefail
cd "$(dirname "$0")/.."

swift build -c release --product waakvlamd >/dev/null
swift build -c release --product waakvlam >/dev/null
bin=$(swift build -c release --show-bin-path)

work=$(mktemp -d)
daemon=""
cleanup() {
  if [ -n "$daemon" ]; then kill "$daemon" 2>/dev/null || true; wait "$daemon" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cp -r Config "$work/Config"
sed -i "s/127.0.0.1:8443/127.0.0.1:$port/" "$work/Config/node.json"
"$bin/waakvlam" pki init --config "$work/Config" --out "$work/run/pki" >/dev/null

"$bin/waakvlamd" --config "$work/Config" 2>"$work/daemon.log" &
daemon=$!
for _ in $(seq 50); do
  curl -fsS --cacert "$work/run/pki/ca.pem" --cert "$work/run/pki/intermaris.crt" --key "$work/run/pki/intermaris.key" \
    "https://127.0.0.1:$port/v1/whoami" >/dev/null 2>&1 && break
  sleep 0.1
done

cat >"$work/openssl-mtls" <<WRAPPER
#!/bin/sh
if [ "\$1" = "s_client" ]; then
  shift
  exec /usr/bin/openssl s_client -cert "$work/run/pki/intermaris.crt" -key "$work/run/pki/intermaris.key" "\$@"
fi
exec /usr/bin/openssl "\$@"
WRAPPER
chmod +x "$work/openssl-mtls"

testssl --openssl "$work/openssl-mtls" --add-ca "$work/run/pki/ca.pem" --color 0 --warnings batch \
  --jsonfile "$work/testssl.json" "127.0.0.1:$port" >"$work/testssl.txt" 2>&1 || true
grep -E "^ (SSLv|TLS 1|PFS is|Has server cipher|Negotiated|Session Resumption|Chain of trust|Certificate Revocation|Strict Transport|Security headers|Secure Client-Initiated)" "$work/testssl.txt" || true
python3 - "$work/testssl.json" <<'PY'
import collections, json, sys
findings = json.load(open(sys.argv[1]))
counts = collections.Counter(f["severity"] for f in findings)
print("\nseverities:", ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
for f in findings:
    if f["severity"] in ("LOW", "MEDIUM", "HIGH", "CRITICAL", "WARN"):
        print(f'{f["severity"]:8} {f["id"]}: {f["finding"]}')
bad = [f for f in findings if f["severity"] in ("MEDIUM", "HIGH", "CRITICAL")]
print("\nno finding rated MEDIUM or worse" if not bad else f"\n{len(bad)} finding(s) rated MEDIUM or worse")
sys.exit(1 if bad else 0)
PY
