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

SETTINGS=(PROJECT ZONE TPU_NAME ACCELERATOR_TYPE RUNTIME_VERSION BUCKET SPOT RESERVED QUEUED
  QUEUED_RESOURCE VALID_UNTIL NETWORK SUBNETWORK SERVICE_ACCOUNT INTERNAL_IPS SSH_VIA
  WORKDIR_PREFIX WORKDIR_ROOT DATA_DIR DATA_STORE REMOTE_DIR VENV_DIR LOG_DIR
  LOG_COPY_EVERY PYTHON_VERSION STOP_TIMEOUT POLL_SECONDS MAX_ATTEMPTS TAR)

# Prints the comment block at the top of the running script: its --help.
help_text() {
  awk 'NR > 1 { if (!/^#/) exit; print }' "$0"
}

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
  RESERVED="${RESERVED:-0}"
  QUEUED="${QUEUED:-1}"
  QUEUED_RESOURCE="${QUEUED_RESOURCE:-${TPU_NAME:-}-qr}"
  VALID_UNTIL="${VALID_UNTIL:-}"
  NETWORK="${NETWORK:-}"
  SUBNETWORK="${SUBNETWORK:-}"
  SERVICE_ACCOUNT="${SERVICE_ACCOUNT:-}"
  INTERNAL_IPS="${INTERNAL_IPS:-0}"
  SSH_VIA="${SSH_VIA:-external}"
  WORKDIR_PREFIX="${WORKDIR_PREFIX:-rnnlab}"
  WORKDIR_ROOT="${WORKDIR_ROOT:-}"
  DATA_DIR="${DATA_DIR:-rnnlab-data}"
  DATA_STORE="${DATA_STORE:-}"
  REMOTE_DIR="${REMOTE_DIR:-rnnlab}"
  VENV_DIR="${VENV_DIR:-rnnlab-venv}"
  LOG_DIR="${LOG_DIR:-rnnlab-logs}"
  LOG_COPY_EVERY="${LOG_COPY_EVERY:-60}"
  PYTHON_VERSION="${PYTHON_VERSION:-3.12}"
  STOP_TIMEOUT="${STOP_TIMEOUT:-300}"
  POLL_SECONDS="${POLL_SECONDS:-60}"
  MAX_ATTEMPTS="${MAX_ATTEMPTS:-20}"
  TAR="${TAR:-tar}"
  DRY_RUN="${DRY_RUN:-0}"

  for name in PROJECT ZONE TPU_NAME ACCELERATOR_TYPE RUNTIME_VERSION; do
    [[ -n "${!name:-}" ]] || die "$name is not set (in $config or the environment)"
  done
  [[ "$TPU_NAME" =~ ^[a-z]([-a-z0-9]*[a-z0-9])?$ ]] ||
    die "TPU_NAME must be lower-case letters, digits and '-', starting with a letter;" \
      "got '$TPU_NAME'"
  for name in SPOT RESERVED QUEUED INTERNAL_IPS DRY_RUN; do
    [[ "${!name}" == 0 || "${!name}" == 1 ]] || die "$name must be 0 or 1, got '${!name}'"
  done
  [[ "$SPOT" == 1 && "$RESERVED" == 1 ]] &&
    die "SPOT=1 and RESERVED=1 exclude each other: spot capacity or a reservation, not both"
  [[ -n "$VALID_UNTIL" && "$QUEUED" == 0 ]] &&
    die "VALID_UNTIL='$VALID_UNTIL' needs a queued resource (QUEUED=1)"
  [[ -z "$VALID_UNTIL" || "$VALID_UNTIL" =~ ^([0-9]+[smhd])+$ ]] ||
    die "VALID_UNTIL must be a duration such as 6h or 1d12h, got '$VALID_UNTIL'"
  case "$SSH_VIA" in
    external | internal | iap) ;;
    *) die "SSH_VIA must be external, internal or iap, got '$SSH_VIA'" ;;
  esac
  for name in STOP_TIMEOUT LOG_COPY_EVERY POLL_SECONDS MAX_ATTEMPTS; do
    [[ "${!name}" =~ ^[0-9]+$ ]] || die "$name must be a whole number, got '${!name}'"
  done
  for name in REMOTE_DIR VENV_DIR LOG_DIR DATA_DIR; do
    # Relative to the home directory on every worker; no spaces so that shell words stay simple.
    [[ "${!name}" =~ ^[A-Za-z0-9_.][A-Za-z0-9_./-]*$ ]] ||
      die "$name must be a path relative to the home directory, got '${!name}'"
  done
  # Every sync replaces REMOTE_DIR: data kept inside it would be deleted each time.
  [[ "$DATA_DIR" == "$REMOTE_DIR" || "$DATA_DIR" == "$REMOTE_DIR"/* ]] &&
    die "DATA_DIR ($DATA_DIR) must be outside REMOTE_DIR ($REMOTE_DIR), which every sync replaces"
  return 0
}

require_bucket() {
  [[ -n "${BUCKET:-}" ]] || die "BUCKET is not set (in the settings file or the environment)"
  BUCKET="${BUCKET#gs://}"
  BUCKET="${BUCKET%/}"
}

# Where workdirs live (WORKDIR_ROOT, default gs://BUCKET/WORKDIR_PREFIX) and where prepared
# data are kept between slices (DATA_STORE, default gs://BUCKET/WORKDIR_PREFIX-data).
resolve_storage() {
  if [[ -z "$WORKDIR_ROOT" || -z "$DATA_STORE" ]]; then require_bucket; fi
  WORKDIR_ROOT="${WORKDIR_ROOT:-gs://$BUCKET/$WORKDIR_PREFIX}"
  DATA_STORE="${DATA_STORE:-gs://$BUCKET/$WORKDIR_PREFIX-data}"
  WORKDIR_ROOT="${WORKDIR_ROOT%/}"
  DATA_STORE="${DATA_STORE%/}"
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

# How ssh and scp reach the workers. SSH_VIA=internal adds --internal-ip (the workers'
# internal addresses, from inside the VPC); SSH_VIA=iap tunnels through Identity-Aware Proxy
# with --tunnel-through-iap, which gcloud documents for the alpha tpu-vm ssh/scp commands:
#   https://cloud.google.com/sdk/gcloud/reference/compute/tpus/tpu-vm/ssh
#   https://cloud.google.com/sdk/gcloud/reference/compute/tpus/tpu-vm/scp
#   https://cloud.google.com/sdk/gcloud/reference/alpha/compute/tpus/tpu-vm/scp
tpu_vm() {
  if [[ "$SSH_VIA" == iap ]]; then
    printf '%s\n' gcloud alpha compute tpus tpu-vm
  else
    printf '%s\n' gcloud compute tpus tpu-vm
  fi
}

access_flags() {
  case "$SSH_VIA" in
    internal) printf '%s\n' --internal-ip ;;
    iap) printf '%s\n' --tunnel-through-iap ;;
  esac
}

# Runs a remote shell command on the workers named by WORKER (default: all of them).
#   gcloud compute tpus tpu-vm ssh TPU --zone=ZONE --worker=all --command=COMMAND
on_workers() {
  local flags=() cmd=() access=()
  mapfile -t flags < <(location_flags)
  mapfile -t cmd < <(tpu_vm)
  mapfile -t access < <(access_flags)
  run "${cmd[@]}" ssh "$TPU_NAME" "${flags[@]}" "--worker=${WORKER:-all}" "${access[@]}" \
    "--command=$1" "${@:2}"
}

# Copies a local file to the same relative path in the home directory of every worker.
#   gcloud compute tpus tpu-vm scp SRC TPU:DEST --zone=ZONE --worker=all
copy_to_workers() {
  local flags=() cmd=() access=()
  mapfile -t flags < <(location_flags)
  mapfile -t cmd < <(tpu_vm)
  mapfile -t access < <(access_flags)
  run "${cmd[@]}" scp "$1" "$TPU_NAME:$2" "${flags[@]}" "--worker=${WORKER:-all}" "${access[@]}"
}

uses_queued_resource() {
  [[ "$QUEUED" == 1 ]]
}

# The slice's state in one word: a queued resource's (ACTIVE, WAITING_FOR_RESOURCES,
# PROVISIONING, SUSPENDED, FAILED, ...), or for a directly created node ACTIVE when it is
# READY and its own state otherwise (PREEMPTED, ...). Empty when the slice does not exist.
#   https://cloud.google.com/tpu/docs/queued-resources (the states)
slice_state() {
  local flags=() state
  mapfile -t flags < <(location_flags)
  if uses_queued_resource; then
    state="$(gcloud compute tpus queued-resources describe "$QUEUED_RESOURCE" "${flags[@]}" \
      "--format=value(state.state)" 2>/dev/null)" || state=""
  else
    state="$(gcloud compute tpus tpu-vm describe "$TPU_NAME" "${flags[@]}" \
      "--format=value(state)" 2>/dev/null)" || state=""
    [[ "$state" == READY ]] && state=ACTIVE
  fi
  printf '%s' "$state"
}

# Waits until the slice is ACTIVE; fails on a state it cannot leave by itself.
wait_active() {
  local state
  while true; do
    state="$(slice_state)"
    echo "slice $TPU_NAME: ${state:-absent}" >&2
    case "$state" in
      ACTIVE) return 0 ;;
      "" | FAILED | SUSPENDED | SUSPENDING | PREEMPTED | TERMINATED)
        die "slice $TPU_NAME is ${state:-absent}; see tpu/status.sh" ;;
    esac
    sleep "$POLL_SECONDS"
  done
}

# Whether the run in workdir $1 is finished: its summary.json exists and does not say it
# stopped for a preemption (a preempted run writes one too). The workdir is on Cloud Storage
# or on a local (shared) path.
#   https://cloud.google.com/sdk/gcloud/reference/storage/cat
run_finished() {
  local summary
  if [[ "$1" == gs://* ]]; then
    summary="$(gcloud storage cat "$1/summary.json" 2>/dev/null)" || return 1
  else
    summary="$(cat "$1/summary.json" 2>/dev/null)" || return 1
  fi
  ! grep -q '"stop_reason": *"preempted"' <<<"$summary"
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

# The run that tpu/run.sh and tpu/launch.sh take: EXPERIMENT, the first of "$@" (the caller
# shifts it off), with the settings and storage loaded. Sets experiment, name (from --name,
# else the experiment's), session and workdir.
resolve_run() {
  [[ $# -ge 1 ]] || { usage >&2; die "EXPERIMENT is missing"; }
  experiment="$1"
  load_settings
  resolve_storage

  name="$(run_name "${name:-$experiment}")"
  session="$(session_name "$name")"
  workdir="$WORKDIR_ROOT/$name"
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

# Remote shell snippet: fails (status 3) when a run other than session $1 is going on the
# worker. A host's TPU chips belong to one process at a time, so a slice runs one run.
one_run_snippet() {
  local session
  session="$(shquote "$1")"
  printf '%s' "other=\$(tmux list-sessions -F '#{session_name}' 2>/dev/null |" \
    " grep '^rnnlab-' | grep -vx $session | head -n 1);" \
    " if [ -n \"\$other\" ]; then echo \"error: run \$other is going on \$(hostname);" \
    " a slice runs one run at a time: tpu/stop.sh \${other#rnnlab-} first\" >&2; exit 3; fi"
}

# The per-worker log file of session $1, as a remote shell word ($(hostname) names the worker).
log_file() {
  printf '"$HOME"/%s/%s-"$(hostname)".log' "$LOG_DIR" "$1"
}

# Compiles the run for ACCELERATOR_TYPE on this machine (rnnlab compile; docs/tpu.md) before
# a slice is created or used, so that a run that does not compile or fit never books one.
# The compiler is RNNLAB_COMPILE, default the rnnlab of build/venv-tpu (jax[tpu], made by
# `make tpu-venv`); the run's --config.* overrides go with it. Runs under DRY_RUN=1 too: it
# books nothing. Callers skip it with --no-compile.
compile_for_slice() {
  local experiment="$1" arg status=0
  shift
  local rnnlab="${RNNLAB_COMPILE:-$REPO_DIR/build/venv-tpu/bin/rnnlab}"
  [[ -x "$rnnlab" ]] ||
    die "no rnnlab with libtpu at $rnnlab to compile the run for $ACCELERATOR_TYPE:" \
      "run 'make tpu-venv' (or set RNNLAB_COMPILE), or pass --no-compile"
  local overrides=()
  for arg in "$@"; do
    if [[ "$arg" == --config.* ]]; then overrides+=("$arg"); fi
  done
  echo "compiling $experiment for $ACCELERATOR_TYPE before booking (--no-compile skips)" >&2
  "$rnnlab" compile --config "$experiment" --topology "$ACCELERATOR_TYPE" \
    "${overrides[@]}" >&2 || status=$?
  ((status == 0)) ||
    die "$experiment does not compile or fit on $ACCELERATOR_TYPE (rnnlab compile exit" \
      "$status, above); no slice was booked or used"
}
