#!/usr/bin/env bash
# The whole test suite, as README.md gives it: installs what the tests need (skipping what is present), starts
# PostgreSQL where it is not running, then runs formatting, lints and every test against real services.
# Safe to run again; needs root (or sudo) only for the first install of system packages.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n==> %s\n' "$*"; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# --- system packages ------------------------------------------------------------------------------------------
APT_UPDATED=0
ensure_apt() {
  local missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing ${missing[*]}"
  if [ "$APT_UPDATED" = 0 ]; then as_root apt-get update -qq; APT_UPDATED=1; fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

# chromium + chromium-driver + iproute2: the browser tests (tests/browser.rs) run headless Chromium in a fresh
# network namespace; iptables makes the symmetric NAT of the TURN browser test. coturn brings turnutils_uclient,
# the third-party TURN client of tests/turn.rs (its server is not started). g++ builds libwebm (per-track
# recording files); ffmpeg composes recordings and probes them; libpocketsphinx3 with its en-us model transcribes
# them; espeak-ng speaks the sentence the recording test transcribes; fonts-dejavu-core names people in the video.
# janus is the SFU `sluice bench meeting --compare` measures against (tests/bench_meeting.rs; only its binary and
# plugins are used, the bench starts it with its own configuration).
# GStreamer's webrtcbin (with libnice) and Python's GObject bindings run tests/gst/client.py, a third-party WebRTC
# client written from the docs (tests/browser.rs). firefox-esr, driven by geckodriver (below), meets Chromium in
# tests/browser/firefox.rs.
ensure_apt ca-certificates curl gcc g++ pkg-config postgresql postgresql-client libsrtp2-dev chromium chromium-driver \
  firefox-esr \
  iproute2 iptables coturn ffmpeg libpocketsphinx3 pocketsphinx-en-us espeak-ng fonts-dejavu-core janus \
  gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-nice python3-gi \
  gir1.2-gstreamer-1.0 gir1.2-gst-plugins-base-1.0 gir1.2-gst-plugins-bad-1.0 gir1.2-nice-0.1 python3-websockets

# --- S3-compatible server for the object storage tests ---------------------------------------------------------
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
if ! command -v s3s-fs >/dev/null; then
  log "installing s3s-fs (S3-compatible server for tests; about 2 minutes)"
  cargo install s3s-fs@0.14.1 --features binary
fi
# Firefox's WebDriver server: crates.io is reachable where the npm package's binary download is not.
if ! command -v geckodriver >/dev/null; then
  log "installing geckodriver (Firefox's WebDriver server; about 4 minutes)"
  cargo install geckodriver@0.37.1 --locked
fi

# --- PostgreSQL ------------------------------------------------------------------------------------------------
# Use SLUICE_TEST_DATABASE_URL if given; else the local server on 5432, started if it is installed but stopped;
# else a throwaway cluster in a temp directory on a free port.
start_private_postgres() {
  local bindir port dir
  bindir=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  dir=$(mktemp -d)
  chown postgres "$dir" 2>/dev/null || true
  local run=(); [ "$(id -u)" = 0 ] && run=(runuser -u postgres --)
  "${run[@]}" "$bindir/initdb" -D "$dir/data" -U postgres --auth=trust >/dev/null
  "${run[@]}" "$bindir/pg_ctl" -D "$dir/data" -o "-p $port -k $dir -c listen_addresses=127.0.0.1" -l "$dir/log" -w start >/dev/null
  "$bindir/createdb" -h 127.0.0.1 -p "$port" -U postgres test
  export SLUICE_TEST_DATABASE_URL="postgres://postgres@127.0.0.1:$port/test"
}

if [ -z "${SLUICE_TEST_DATABASE_URL:-}" ]; then
  if ! pg_isready -q -h 127.0.0.1 -p 5432; then
    log "starting PostgreSQL"
    for version in $(ls /etc/postgresql 2>/dev/null); do
      as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start 2>/dev/null || true
    done
  fi
  if pg_isready -q -h 127.0.0.1 -p 5432 && psql -h 127.0.0.1 -U postgres -d postgres -Atc 'select 1' >/dev/null 2>&1; then
    psql -h 127.0.0.1 -U postgres -d postgres -Atc "select 1 from pg_database where datname='test'" | grep -q 1 \
      || createdb -h 127.0.0.1 -U postgres test
    export SLUICE_TEST_DATABASE_URL="postgres://postgres@127.0.0.1:5432/test"
  else
    log "no usable PostgreSQL on 5432: starting a private one"
    start_private_postgres
  fi
fi
echo "PostgreSQL for tests: $SLUICE_TEST_DATABASE_URL"

# --- the checks ------------------------------------------------------------------------------------------------
log "cargo fmt --check"
cargo fmt --all -- --check
log "cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets -- -D warnings
log "cargo test"
cargo test --all-targets "$@"
