#!/usr/bin/env bash
# The Hoorn scenario on loopback: one Waakvlam node on a scratch copy of Config/, and the six
# partners as curl with their own development certificates. It plays a morning of signals
# and prints what each party sent, what the node decided, and what each party received.
# Everything lives in a temporary folder and is removed at the end.
#   Deploy/demo.sh [--keep]      (--keep leaves the folder, the journal and the PKI)
set -euo pipefail
cd "$(dirname "$0")/.."
keep=0
[ "${1:-}" = "--keep" ] && keep=1

bash scripts/install-deps.sh
swift build --product waakvlam >&2
swift build --product waakvlamd >&2
bin=$(swift build --show-bin-path)

work=$(mktemp -d /tmp/waakvlam-demo.XXXXXX)
cp -R Config "$work/Config"
rm -rf "$work/Config/examples"
port=$((20000 + RANDOM % 20000)); admin=$((port + 1))
sed -i "s/127.0.0.1:8443/127.0.0.1:$port/; s/127.0.0.1:9443/127.0.0.1:$admin/" "$work/Config/node.json"
"$bin/waakvlam" pki init --config "$work/Config" --out "$work/run/pki" > /dev/null
"$bin/waakvlamd" --config "$work/Config" 2> "$work/waakvlamd.log" &
node=$!
cleanup() {
  kill -TERM "$node" 2>/dev/null || true
  wait "$node" 2>/dev/null || true
  if [ "$keep" -eq 1 ]; then echo "kept: $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

as() {  # as ORG METHOD PATH [BODY]
  local org=$1 method=$2 path=$3 body=${4:-}
  local args=(-s --cacert "$work/run/pki/ca.pem" --cert "$work/run/pki/$org.crt" --key "$work/run/pki/$org.key" -X "$method")
  [ -n "$body" ] && args+=(-H 'Content-Type: application/json' -d "$body")
  curl "${args[@]}" "https://127.0.0.1:$port$path"
}
for _ in $(seq 50); do as intermaris GET /v1/whoami > /dev/null 2>&1 && break; sleep 0.1; done

show_decisions() {
  python3 -c '
import json, sys
answer = json.load(sys.stdin)
if "recipients" not in answer:
    print("   refused:", answer.get("error", answer)); sys.exit()
for r in answer["recipients"]:
    if r["decision"] == "allowed":
        print("   -> %-15s ALLOWED under %s/%s v%s, fields: %s%s" % (r["recipient"], r["convenant"]["id"], r["rule"], r["convenant"]["version"],
              ", ".join(r["fields"]), ("; dropped: " + ", ".join(r["droppedFields"])) if r["droppedFields"] else ""))
    else:
        print("   -> %-15s DENIED %s: %s" % (r["recipient"], r["code"], r["message"]))
print("   id:", answer["id"])'
}
last_id=""
send() {  # send ORG DESCRIPTION BODY; sets last_id
  echo
  echo "$1 sends $2"
  local answer
  answer=$(as "$1" POST /v1/signals "$3")
  show_decisions <<< "$answer"
  last_id=$(python3 -c 'import json, sys; print(json.load(sys.stdin).get("id", ""))' <<< "$answer")
}
read_inbox() {  # read_inbox ORG: print and acknowledge everything waiting
  as "$1" GET "/v1/inbox?limit=100" | python3 -c '
import json, sys
items = json.load(sys.stdin)["signals"]
print("%s has %d signal(s) waiting" % (sys.argv[1], len(items)))
for s in items:
    print("   %s from %s (%s): %s" % (s["type"], s["sender"]["name"], s["rule"], json.dumps(s["payload"], ensure_ascii=False, sort_keys=True)))
    print("   ACK", s["id"])' "$1" | while IFS= read -r line; do
      case "$line" in
        "   ACK "*) as "$1" POST "/v1/inbox/${line#   ACK }/ack" > /dev/null ;;
        *) echo "$line" ;;
      esac
    done
}

echo "== Hoorn, a morning of signals (node on 127.0.0.1:$port) =="
send intermaris "a zorgsignaal about a vulnerable tenant to 1.Hoorn and to politie" '{
  "type": "zorgsignaal", "to": ["1hoorn", "politie-nhn"],
  "payload": {"Postcode": "1624KM", "Huisnummer": 12, "Huisnummertoevoeging": "a", "Voorletters": "J.", "Achternaam": "Voorbeeld",
              "Geboortedatum": "1948-06-30", "waarneming": "Post stapelt zich op, buren zien de bewoner niet meer.", "urgentie": "hoog",
              "gezondheidsobservatie": "Leek verward bij het laatste huisbezoek."}}'
arrears=$(sed 's#^ *//.*##' Config/payloads/huurachterstand.json)
send intermaris "a Vroeg Eropaf arrears alert, routed to the gemeente of the address (with a BSN and a health note that must not travel)" \
  "{\"type\": \"betalingsachterstand\", \"routeByAddress\": true, \"payload\": $arrears}"
arrears_id=$last_id
send politie-nhn "an overlast report to Intermaris and the gemeente" '{
  "type": "overlast", "to": ["intermaris", "gemeente-hoorn"],
  "payload": {"Postcode": "1624KM", "Huisnummer": 14, "soortOverlast": "geluid", "startdatum": "2026-11-01", "herhaald": true,
              "omschrijving": "Nachtelijk lawaai, derde melding deze maand.", "melderRol": "politie"}}'
send vh-de-boog "a buurtsignaal without personal data" '{
  "type": "buurtsignaal", "to": ["intermaris", "gemeente-hoorn", "1hoorn"],
  "payload": {"wijk": "Kersenboogerd", "postcodegebied": "1624", "thema": "eenzaamheid",
              "omschrijving": "Meerdere ouderen in de flat komen de deur niet meer uit."}}'

echo
echo "== What each party received =="
for org in 1hoorn gemeente-hoorn intermaris politie-nhn ggz-nhn vh-de-boog; do read_inbox "$org"; done

echo
echo "gemeente-hoorn reports back on the arrears alert: opgepakt (and tries to add a reason, which is refused)"
as gemeente-hoorn POST "/v1/signals/$arrears_id/feedback" '{"status": "opgepakt", "fields": {"reden": "schuldhulptraject gestart"}}'; echo
as gemeente-hoorn POST "/v1/signals/$arrears_id/feedback" '{"status": "opgepakt"}'; echo
sleep 0.2
read_inbox intermaris

echo
echo "== The journal =="
kill -TERM "$node"; wait "$node" 2>/dev/null || true
"$bin/waakvlam" journal verify --state "$work/run/state"
echo "Who received data about the tenant at 1624KM 12a?"
"$bin/waakvlam" journal subject --state "$work/run/state" --address 1624KM 12 a || true
