#!/usr/bin/env bash
# Install the real Label Studio server into a virtual environment of its own and build a migrated
# template SQLite database once, so end-to-end tests start a fresh server in seconds.
#
# Idempotent: skips the install when the venv already has the pinned version, and skips the template
# when it exists for the same version, user and token.
#
# Environment (all optional):
#   PROMPTER_LS_VENV      venv directory            (default ~/.cache/prompter/ls-venv)
#   PROMPTER_LS_TEMPLATE  template directory        (default ~/.cache/prompter/ls-template)
#   PROMPTER_LS_VERSION   label-studio version      (default 1.23.2)
#   PROMPTER_LS_PYTHON    python creating the venv  (default python3)
#   PROMPTER_LS_USER / PROMPTER_LS_PASSWORD / PROMPTER_LS_TOKEN   the test user baked into the template
#   PROMPTER_LS_FORCE_TEMPLATE=1   rebuild the template even if it exists
set -euo pipefail

LS_VERSION="${PROMPTER_LS_VERSION:-1.23.2}"
VENV="${PROMPTER_LS_VENV:-$HOME/.cache/prompter/ls-venv}"
TEMPLATE="${PROMPTER_LS_TEMPLATE:-$HOME/.cache/prompter/ls-template}"
PYTHON="${PROMPTER_LS_PYTHON:-python3}"
LS_USER="${PROMPTER_LS_USER:-e2e@prompter.local}"
LS_PASSWORD="${PROMPTER_LS_PASSWORD:-prompter-e2e-password}"
# Legacy API tokens must be exactly 40 hex characters.
LS_TOKEN="${PROMPTER_LS_TOKEN:-0123456789abcdef0123456789abcdef01234567}"

if ! [[ "$LS_TOKEN" =~ ^[0-9a-f]{40}$ ]]; then
  echo "PROMPTER_LS_TOKEN must be 40 lowercase hex characters" >&2
  exit 2
fi

now() { date +%s.%N; }
# GET a loopback URL with optional "Name: value" headers; prints the body, fails unless 2xx (no curl needed).
http_get() {
  "$VENV/bin/python" -c '
import sys, urllib.request
headers = dict(h.split(": ", 1) for h in sys.argv[2:])
try:
    with urllib.request.urlopen(urllib.request.Request(sys.argv[1], headers=headers), timeout=2) as response:
        sys.stdout.write(response.read().decode())
except Exception as exc:
    sys.exit(f"{sys.argv[1]}: {exc}")
' "$@"
}
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
log() { echo "[install_label_studio] $*"; }

total_start=$(now)

# Two test sessions may start at once: one installs, the other waits for it.
mkdir -p "$(dirname "$VENV")" "$(dirname "$TEMPLATE")"
exec 9>"$(dirname "$TEMPLATE")/.install_label_studio.lock"
if command -v flock >/dev/null; then
  flock 9
fi

# --- 1. the virtual environment -------------------------------------------------------------------
step_start=$(now)
installed=""
if [[ -x "$VENV/bin/python" ]]; then
  installed=$("$VENV/bin/python" -m pip show label-studio 2>/dev/null | awk '/^Version:/ { print $2 }' || true)
fi
if [[ "$installed" == "$LS_VERSION" && -x "$VENV/bin/label-studio" ]]; then
  log "label-studio $LS_VERSION already installed in $VENV ($(elapsed "$step_start") s)"
else
  log "installing label-studio==$LS_VERSION into $VENV (found: ${installed:-none})"
  mkdir -p "$(dirname "$VENV")"
  [[ -x "$VENV/bin/python" ]] || "$PYTHON" -m venv "$VENV"
  # Never `label-studio --version`: it starts a server.
  pip_log=$(mktemp)
  if ! "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "label-studio==$LS_VERSION" \
      >"$pip_log" 2>&1; then
    grep -v "is ignored: it is neither" "$pip_log" >&2 || true
    rm -f "$pip_log"
    exit 1
  fi
  rm -f "$pip_log"
  installed=$("$VENV/bin/python" -m pip show label-studio | awk '/^Version:/ { print $2 }')
  if [[ "$installed" != "$LS_VERSION" ]]; then
    echo "label-studio $installed installed, expected $LS_VERSION" >&2
    exit 1
  fi
  log "install: $(elapsed "$step_start") s"
fi

# --- 2. the migrated template database ------------------------------------------------------------
meta_expected="$LS_VERSION $LS_USER $LS_TOKEN"
if [[ "${PROMPTER_LS_FORCE_TEMPLATE:-0}" != "1" && -f "$TEMPLATE/label_studio.sqlite3" \
      && -f "$TEMPLATE/stamp" && "$(cat "$TEMPLATE/stamp")" == "$meta_expected" ]]; then
  log "template database already built in $TEMPLATE"
  log "total: $(elapsed "$total_start") s"
  exit 0
fi

# Label Studio queues jobs for workers that never run when something answers on localhost:6379.
if "$VENV/bin/python" - <<'EOF'
import socket, sys
s = socket.socket()
s.settimeout(0.5)
sys.exit(0 if s.connect_ex(("127.0.0.1", 6379)) == 0 else 1)
EOF
then
  echo "something listens on localhost:6379 (redis?): Label Studio would queue jobs nobody runs; stop it" >&2
  exit 1
fi

step_start=$(now)
work=$(mktemp -d "${TMPDIR:-/tmp}/ls-template.XXXXXX")
server_pid=""
cleanup() {
  if [[ -n "$server_pid" ]] && kill -0 "$server_pid" 2>/dev/null; then
    kill -TERM -- "-$server_pid" 2>/dev/null || true
    sleep 3
    kill -KILL -- "-$server_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

port=$("$VENV/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
mkdir -p "$work/data" "$work/home"
log "migrating a fresh database in $work/data (port $port)"

# The environment Label Studio needs (see docs/label-studio.md). The legacy token flag must be set
# before the database exists: it becomes the organization's setting at creation.
setsid env -u USERNAME -u PASSWORD -u HOST -u PORT \
  HOME="$work/home" \
  LABEL_STUDIO_BASE_DATA_DIR="$work/data" \
  DJANGO_DB=sqlite \
  SENTRY_DSN= FRONTEND_SENTRY_DSN= \
  LATEST_VERSION_CHECK=false COLLECT_ANALYTICS=false \
  ML_BLOCK_LOCAL_IP=false SSRF_PROTECTION_ENABLED=false \
  LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN=true \
  "$VENV/bin/label-studio" start --no-browser --internal-host 127.0.0.1 --port "$port" \
    --username "$LS_USER" --password "$LS_PASSWORD" --user-token "$LS_TOKEN" --enable-legacy-api-token \
  >"$work/server.log" 2>&1 </dev/null &
server_pid=$!

# Label Studio takes the next port silently if ours got taken meanwhile: find the one it prints.
deadline=$(( $(date +%s) + ${PROMPTER_LS_TEMPLATE_TIMEOUT:-600} ))
healthy=""
while (( $(date +%s) < deadline )); do
  if ! kill -0 "$server_pid" 2>/dev/null; then
    echo "Label Studio exited while migrating; its log:" >&2
    tail -n 60 "$work/server.log" >&2
    exit 1
  fi
  bound=$(grep -oE 'http://127\.0\.0\.1:[0-9]+' "$work/server.log" | tail -n 1 | awk -F: '{ print $3 }' || true)
  for p in $port $bound; do
    if http_get "http://127.0.0.1:$p/health" 2>/dev/null | grep -q '"UP"'; then
      healthy=$p
      break 2
    fi
  done
  sleep 1
done
if [[ -z "$healthy" ]]; then
  echo "Label Studio did not become healthy; its log:" >&2
  tail -n 60 "$work/server.log" >&2
  exit 1
fi
log "migrated and healthy on port $healthy: $(elapsed "$step_start") s"

# The token must authenticate: that proves the user and the legacy token setting are in the DB.
if ! whoami=$(http_get "http://127.0.0.1:$healthy/api/current-user/whoami" "Authorization: Token $LS_TOKEN" 2>&1) \
    || [[ "$whoami" != *"\"$LS_USER\""* ]]; then
  echo "GET /api/current-user/whoami with the token failed: $whoami; its log:" >&2
  tail -n 60 "$work/server.log" >&2
  exit 1
fi

step_start=$(now)
kill -TERM -- "-$server_pid" 2>/dev/null || true
for _ in $(seq 1 30); do
  kill -0 "$server_pid" 2>/dev/null || break
  sleep 0.5
done
kill -KILL -- "-$server_pid" 2>/dev/null || true
wait "$server_pid" 2>/dev/null || true
server_pid=""
log "stopped: $(elapsed "$step_start") s"

mkdir -p "$TEMPLATE"
cp "$work/data/label_studio.sqlite3" "$TEMPLATE/label_studio.sqlite3.tmp"
mv "$TEMPLATE/label_studio.sqlite3.tmp" "$TEMPLATE/label_studio.sqlite3"
cat >"$TEMPLATE/credentials.json" <<EOF
{"version": "$LS_VERSION", "username": "$LS_USER", "password": "$LS_PASSWORD", "token": "$LS_TOKEN"}
EOF
echo "$meta_expected" >"$TEMPLATE/stamp"
log "template database: $TEMPLATE/label_studio.sqlite3"
log "total: $(elapsed "$total_start") s"
