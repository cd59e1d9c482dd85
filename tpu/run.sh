#!/usr/bin/env bash
# Runs an experiment on every worker of the slice, in a tmux session named after the run.
#
#   tpu/run.sh [--name RUN_NAME] EXPERIMENT [TRAIN_ARGS...]
#
#   tpu/run.sh experiments/charlm.py:tpu
#   tpu/run.sh --name charlm-lr3 experiments/charlm.py:tpu --config.optim.learning_rate=3e-3
#
# Every worker runs `rnnlab train --config EXPERIMENT --workdir gs://BUCKET/PREFIX/RUN_NAME
# TRAIN_ARGS...` in the tmux session rnnlab-RUN_NAME and appends its output to its own log
# file, LOG_DIR/rnnlab-RUN_NAME-<worker hostname>.log. A run already going in that session is
# stopped first (SIGTERM, so it saves a checkpoint). Running the same command again resumes
# the run from its workdir. The run name defaults to the experiment's file and variant
# (experiments/charlm.py:tpu -> charlm-tpu).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
usage() { sed -n '2,16p' "$0"; }

name=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    -h | --help) usage; exit 0 ;;
    --name) [[ $# -ge 2 ]] || die "--name needs a value"; name="$2"; shift 2 ;;
    --name=*) name="${1#--name=}"; shift ;;
    *) break ;;
  esac
done
[[ $# -ge 1 ]] || { usage >&2; die "EXPERIMENT is missing"; }
experiment="$1"
shift
load_settings
require_bucket

name="$(run_name "${name:-$experiment}")"
session="$(session_name "$name")"
workdir="gs://$BUCKET/$WORKDIR_PREFIX/$name"
log="$(log_file "$session")"

train=("\"\$HOME\"/$VENV_DIR/bin/rnnlab" train --config "$experiment" --workdir "$workdir" "$@")
# The first word is a shell expression ($HOME), the rest are quoted arguments.
train_cmd="${train[0]} $(shjoin "${train[@]:1}")"
env_cmd="export PYTHONUNBUFFERED=1"
[[ -n "$DATA_DIR" ]] && env_cmd+="; export TFDS_DATA_DIR=$(shquote "$DATA_DIR")"
inner="cd \"\$HOME\"/$REMOTE_DIR && $env_cmd;\
 echo \"=== \$(date -u +%FT%TZ) start $session on \$(hostname) ===\" >> $log;\
 exec $train_cmd >> $log 2>&1"

on_workers "$(stop_snippet "$session");\
 mkdir -p \"\$HOME\"/$LOG_DIR && tmux new-session -d -s $(shquote "$session") $(shquote "$inner")"

if [[ "$DRY_RUN" != 1 ]]; then
  echo "started $session on all workers; workdir $workdir" >&2
  echo "logs: tpu/logs.sh $name -f     stop: tpu/stop.sh $name" >&2
fi
