# Shared by the tpu/*.sh scripts: settings, quoting, and the gcloud calls they all make.
# Sourced, not run. Settings come from (highest first) the caller's environment, the file
# named by RNNLAB_TPU_CONFIG (default tpu/config.env), and the defaults below.
# DRY_RUN=1 prints every command, one per line and quoted for a POSIX shell, instead of
# running it.

set -euo pipefail

if ((BASH_VERSINFO[0] < 4 || (BASH_VERSINFO[0] == 4 && BASH_VERSINFO[1] < 4))); then
  echo "error: these scripts need bash >= 4.4 (macOS: brew install bash)" >&2
  exit 2
fi

TPU_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(cd "$TPU_DIR/.." && pwd)"

SETTINGS=(PROJECT ZONE TPU_NAME ACCELERATOR_TYPE RUNTIME_VERSION BUCKET SPOT QUEUED
  QUEUED_RESOURCE WORKDIR_PREFIX DATA_DIR REMOTE_DIR VENV_DIR LOG_DIR PYTHON_VERSION
  STOP_TIMEOUT TAR)

die() {
  echo "error: $*" >&2
  exit 2
}

load_settings() {
  local name
  declare -A from_env=()
  for name in "${SETTINGS[@]}"; do
    if [[ -n "${!name+set}" ]]; then from_env[$name]="${!name}"; fi
  done
  local config="${RNNLAB_TPU_CONFIG:-$TPU_DIR/config.env}"
  if [[ ! -f "$config" ]]; then
    die "settings file $config not found: copy tpu/config.env.example to tpu/config.env" \
      "and fill it in, or point RNNLAB_TPU_CONFIG at your own file"
  fi
  # shellcheck disable=SC1090
  source "$config"
  for name in "${!from_env[@]}"; do printf -v "$name" '%s' "${from_env[$name]}"; done

  SPOT="${SPOT:-0}"
  QUEUED="${QUEUED:-0}"
  QUEUED_RESOURCE="${QUEUED_RESOURCE:-${TPU_NAME:-}-qr}"
  WORKDIR_PREFIX="${WORKDIR_PREFIX:-rnnlab}"
  DATA_DIR="${DATA_DIR:-}"
  REMOTE_DIR="${REMOTE_DIR:-rnnlab}"
  VENV_DIR="${VENV_DIR:-rnnlab-venv}"
  LOG_DIR="${LOG_DIR:-rnnlab-logs}"
  PYTHON_VERSION="${PYTHON_VERSION:-3.12}"
  STOP_TIMEOUT="${STOP_TIMEOUT:-300}"
  TAR="${TAR:-tar}"
  DRY_RUN="${DRY_RUN:-0}"

  for name in PROJECT ZONE TPU_NAME ACCELERATOR_TYPE RUNTIME_VERSION; do
    [[ -n "${!name:-}" ]] || die "$name is not set (in $config or the environment)"
  done
  [[ "$TPU_NAME" =~ ^[a-z]([-a-z0-9]*[a-z0-9])?$ ]] ||
    die "TPU_NAME must be lower-case letters, digits and '-', starting with a letter;" \
      "got '$TPU_NAME'"
  for name in SPOT QUEUED DRY_RUN; do
    [[ "${!name}" == 0 || "${!name}" == 1 ]] || die "$name must be 0 or 1, got '${!name}'"
  done
  [[ "$STOP_TIMEOUT" =~ ^[0-9]+$ ]] || die "STOP_TIMEOUT must be seconds, got '$STOP_TIMEOUT'"
  for name in REMOTE_DIR VENV_DIR LOG_DIR; do
    # Relative to the home directory on every worker; no spaces so that shell words stay simple.
    [[ "${!name}" =~ ^[A-Za-z0-9_.][A-Za-z0-9_./-]*$ ]] ||
      die "$name must be a path relative to the home directory, got '${!name}'"
  done
}

require_bucket() {
  [[ -n "${BUCKET:-}" ]] || die "BUCKET is not set (in the settings file or the environment)"
  BUCKET="${BUCKET#gs://}"
  BUCKET="${BUCKET%/}"
}

# Quotes one word for a POSIX shell; words made only of safe characters stay bare.
shquote() {
  local s="$1"
  if [[ -n "$s" && "$s" =~ ^[A-Za-z0-9_./:=@%+,-]+$ ]]; then
    printf '%s' "$s"
  else
    printf "'%s'" "${s//\'/\'\\\'\'}"
  fi
}

# Quotes every argument and joins them with spaces.
shjoin() {
  local out="" word
  for word in "$@"; do out+="${out:+ }$(shquote "$word")"; done
  printf '%s' "$out"
}

# Runs a command, or prints it under DRY_RUN=1.
run() {
  if [[ "$DRY_RUN" == 1 ]]; then
    shjoin "$@"
    echo
  else
    echo "+ $(shjoin "$@")" >&2
    "$@"
  fi
}

# Runs a local shell pipeline given as one string, or prints it under DRY_RUN=1.
run_shell() {
  if [[ "$DRY_RUN" == 1 ]]; then
    printf '%s\n' "$1"
  else
    echo "+ $1" >&2
    bash -o pipefail -c "$1"
  fi
}

location_flags() {
  printf '%s\n' "--project=$PROJECT" "--zone=$ZONE"
}

# Runs a remote shell command on the workers named by WORKER (default: all of them).
on_workers() {
  local flags=()
  mapfile -t flags < <(location_flags)
  run gcloud compute tpus tpu-vm ssh "$TPU_NAME" "${flags[@]}" "--worker=${WORKER:-all}" \
    "--command=$1" "${@:2}"
}

# Copies a local file to the same relative path in the home directory of every worker.
copy_to_workers() {
  local flags=()
  mapfile -t flags < <(location_flags)
  run gcloud compute tpus tpu-vm scp "$1" "$TPU_NAME:$2" "${flags[@]}" "--worker=${WORKER:-all}"
}

uses_queued_resource() {
  [[ "$SPOT" == 1 || "$QUEUED" == 1 ]]
}

# A run's name from an experiment spec (experiments/charlm.py:tpu -> charlm-tpu) or from a
# name already in that form; the tmux session, log files and workdir are named after it.
run_name() {
  local name="$1"
  name="${name##*/}"
  name="${name/.py/}"
  name="$(printf '%s' "$name" | tr -c 'A-Za-z0-9_-' '-')"
  name="${name##-}"
  name="${name%%-}"
  [[ -n "$name" ]] || die "cannot derive a run name from '$1'; pass --name"
  printf '%s' "$name"
}

session_name() {
  printf 'rnnlab-%s' "$1"
}

# Remote shell snippet: asks the run in tmux session $1 to stop (SIGTERM, which makes the
# trainer save a checkpoint and exit), waits up to STOP_TIMEOUT seconds for it, then closes
# the session. The run is found by its session name only, never by matching process names.
stop_snippet() {
  local target
  target="$(shquote "=$1")"
  printf '%s' "if tmux has-session -t $target 2>/dev/null; then" \
    " pid=\$(tmux list-panes -t $target -F '#{pane_pid}' | head -n 1);" \
    " kill -TERM \"\$pid\" 2>/dev/null || true;" \
    " for i in \$(seq 1 $STOP_TIMEOUT); do" \
    " tmux has-session -t $target 2>/dev/null || break; sleep 1; done;" \
    " tmux kill-session -t $target 2>/dev/null || true;" \
    " fi"
}

# The per-worker log file of session $1, as a remote shell word ($(hostname) names the worker).
log_file() {
  printf '"$HOME"/%s/%s-"$(hostname)".log' "$LOG_DIR" "$1"
}
