#!/usr/bin/env bash
# Runs a Waakvlam node on the example configuration in Config/ (Hoorn), for a first look:
# builds the binaries, creates a development PKI in run/pki on the first run (the CA, the
# node's certificate and one per organisation, and the pins the configuration needs), prints
# ready-to-paste curl commands, and starts waakvlamd in the foreground (Ctrl-C stops it
# gracefully). State (journal, archive) goes to run/state. Remove run/ to start afresh.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh
swift build --product waakvlam >&2
swift build --product waakvlamd >&2
bin=$(swift build --show-bin-path)

if [ ! -f run/pki/ca.pem ]; then
  "$bin/waakvlam" pki init --config Config --out run/pki >&2
fi
"$bin/waakvlamd" --config Config --check

port=$(sed -n 's/.*peer: *"[^"]*:\([0-9]*\)".*/\1/p' Config/node.json | head -n 1)
admin=$(sed -n 's/.*admin: *"[^"]*:\([0-9]*\)".*/\1/p' Config/node.json | head -n 1)
as() { echo "curl -s --cacert run/pki/ca.pem --cert run/pki/$1.crt --key run/pki/$1.key"; }
cat <<TXT

Waakvlam is starting on https://127.0.0.1:$port (admin: https://127.0.0.1:$admin). In another terminal:

# Who am I? (Intermaris's certificate)
$(as intermaris) https://127.0.0.1:$port/v1/whoami

# Intermaris sends a first signal (a zorgsignaal) to 1.Hoorn and to politie (politie is refused):
$(as intermaris) -H 'Content-Type: application/json' https://127.0.0.1:$port/v1/signals -d '{
  "type": "zorgsignaal", "to": ["1hoorn", "politie-nhn"],
  "payload": {"Postcode": "1624KM", "Huisnummer": 12, "Voorletters": "J.", "Achternaam": "Voorbeeld",
              "Geboortedatum": "1948-06-30", "waarneming": "Post stapelt zich op.", "urgentie": "hoog"}}'

# 1.Hoorn reads its inbox, then acknowledges a signal by its id:
$(as 1hoorn) https://127.0.0.1:$port/v1/inbox
$(as 1hoorn) -X POST https://127.0.0.1:$port/v1/inbox/<id>/ack

# Health and metrics (gemeente Hoorn is the administrator):
$(as gemeente-hoorn) https://127.0.0.1:$admin/healthz
$(as gemeente-hoorn) https://127.0.0.1:$admin/metrics

TXT
exec "$bin/waakvlamd" --config Config
