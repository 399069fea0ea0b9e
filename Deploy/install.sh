#!/usr/bin/env bash
# Installs Waakvlam as a systemd service on a Debian/Ubuntu host:
#   - builds release binaries (swift build -c release),
#   - installs waakvlamd and waakvlam to $PREFIX/bin,
#   - creates the system user 'waakvlam' and the state folder /var/lib/waakvlam (0700),
#   - installs the configuration to /etc/waakvlam (never overwrites an existing one),
#   - installs and enables the systemd unit (not started: put the certificates in place first).
# Usage: sudo Deploy/install.sh [--prefix /usr/local] [--config-from Config] [--no-build]
set -euo pipefail
cd "$(dirname "$0")/.."

prefix=/usr/local
config_from=Config
build=1
while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) prefix=$2; shift 2 ;;
    --config-from) config_from=$2; shift 2 ;;
    --no-build) build=0; shift ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *) echo "install.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
[ "$(id -u)" -eq 0 ] || { echo "install.sh: run as root (sudo): it creates a user and writes to /etc" >&2; exit 1; }

bash scripts/install-deps.sh
if [ "$build" -eq 1 ]; then
  swift build -c release --product waakvlamd
  swift build -c release --product waakvlam
fi
bin=$(swift build -c release --show-bin-path)
install -d "$prefix/bin"
install -m 0755 "$bin/waakvlamd" "$prefix/bin/waakvlamd"
install -m 0755 "$bin/waakvlam" "$prefix/bin/waakvlam"

if ! id waakvlam >/dev/null 2>&1; then
  useradd --system --home-dir /var/lib/waakvlam --shell /usr/sbin/nologin waakvlam
fi
install -d -m 0700 -o waakvlam -g waakvlam /var/lib/waakvlam

if [ -e /etc/waakvlam ]; then
  echo "install.sh: /etc/waakvlam exists; left as it is (compare with $config_from yourself)"
else
  install -d -m 0750 -o root -g waakvlam /etc/waakvlam
  cp -R "$config_from"/. /etc/waakvlam/
  rm -rf /etc/waakvlam/examples
  # The production node settings: state in /var/lib/waakvlam, certificates in /etc/waakvlam/tls.
  install -m 0640 -o root -g waakvlam Deploy/node.production.json /etc/waakvlam/node.json
  install -d -m 0750 -o root -g waakvlam /etc/waakvlam/tls
  chown -R root:waakvlam /etc/waakvlam
  chmod -R g+rX,o-rwx /etc/waakvlam
fi

install -d "$prefix/share/doc/waakvlam"
install -m 0644 Deploy/PRODUCTION.md README.md "$prefix/share/doc/waakvlam/"
unit=/etc/systemd/system/waakvlamd.service
sed "s#/usr/local/bin#$prefix/bin#g; s#/usr/local/share#$prefix/share#g" Deploy/waakvlamd.service > "$unit"
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
  systemctl daemon-reload
  systemctl enable waakvlamd.service
  echo "installed; put the node certificate, key, CA bundle (and CRL) in /etc/waakvlam/tls, then:"
  echo "  sudo -u waakvlam $prefix/bin/waakvlamd --config /etc/waakvlam --check && sudo systemctl start waakvlamd"
else
  echo "installed; systemd is not running here, so the unit was copied to $unit but not enabled"
fi
command -v systemd-analyze >/dev/null 2>&1 && systemd-analyze verify "$unit" || true
