#!/usr/bin/env bash
# Installs Sluice as a systemd service on this host: binary, user, configuration, kernel settings.
# Usage: deploy/bare-metal/install.sh [path/to/sluice]   (default: target/release/sluice; run as root)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
binary=${1:-$here/../../target/release/sluice}
[ -x "$binary" ] || { echo "no binary at $binary: run 'cargo build --release' first" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 1; }

install -m 0755 "$binary" /usr/local/bin/sluice
id sluice >/dev/null 2>&1 || useradd --system --home /var/lib/sluice --shell /usr/sbin/nologin sluice
install -d -m 0750 -o root -g sluice /etc/sluice
[ -f /etc/sluice/sluice.toml ] || install -m 0640 -g sluice "$here/sluice.toml" /etc/sluice/sluice.toml
if [ ! -f /etc/sluice/sluice.env ]; then
  umask 077
  printf 'SLUICE_AUTH__TOKEN_SECRET=%s\n' "$(head -c 48 /dev/urandom | base64 | tr -d '/+=\n')" > /etc/sluice/sluice.env
  printf 'SLUICE_TURN__SECRETS=[%s]\n' "$(head -c 32 /dev/urandom | base64 | tr -d '/+=\n')" >> /etc/sluice/sluice.env
  chgrp sluice /etc/sluice/sluice.env && chmod 0640 /etc/sluice/sluice.env
fi
install -m 0644 "$here/90-sluice.conf" /etc/sysctl.d/90-sluice.conf
sysctl --quiet --system
install -m 0644 "$here/sluice.service" /etc/systemd/system/sluice.service
# The relay alone, for relay hosts: installed, not enabled (`systemctl enable --now sluice-turn`).
install -m 0644 "$here/sluice-turn.service" /etc/systemd/system/sluice-turn.service
# The recorder alone, for recording hosts: installed, not enabled (`systemctl enable --now sluice-recorder`).
install -m 0644 "$here/sluice-recorder.service" /etc/systemd/system/sluice-recorder.service
systemctl daemon-reload
# Checks the configuration before enabling: exits 2 naming the key if anything is wrong.
sudo -u sluice /usr/local/bin/sluice --config /etc/sluice/sluice.toml serve --print-config >/dev/null
systemctl enable --now sluice
echo "sluice is running: systemctl status sluice; journalctl -u sluice -f"
