#!/usr/bin/env bash
# Runs an experiment on every worker of the slice, in a tmux session named after the run.
#
#   tpu/run.sh [--name RUN_NAME] [--no-data] [--no-compile] EXPERIMENT [TRAIN_ARGS...]
#
#   tpu/run.sh experiments/charlm.py:tpu
#   tpu/run.sh --name charlm-lr3 experiments/charlm.py:tpu --config.optim.lr=3e-3
#
# First the run is compiled for the slice's ACCELERATOR_TYPE on this machine (rnnlab compile,
# with the --config.* overrides of TRAIN_ARGS): a run that does not compile or fit stops here,
# before the slice is used (--no-compile skips this). Then the experiment's data are
# prepared once for the slice (tpu/data.sh; --no-data skips this). Then every worker runs `rnnlab train --config EXPERIMENT --workdir
# WORKDIR_ROOT/RUN_NAME TRAIN_ARGS...` (WORKDIR_ROOT defaults to gs://BUCKET/WORKDIR_PREFIX)
# in the tmux session rnnlab-RUN_NAME, through tpu/worker.sh: output appended to the
# worker's log file LOG_DIR/rnnlab-RUN_NAME-<worker hostname>.log, which is copied to
# WORKDIR/logs/<hostname>-<start time>.log. A run already going in that session is stopped
# first (SIGTERM, so it saves a checkpoint); a run of another name is refused, since a
# slice's chips serve one run at a time. Running the same command again resumes the run
# from its workdir. The run name defaults to the experiment's file and variant
# (experiments/charlm.py:tpu -> charlm-tpu).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
usage() { help_text; }

name=""
prepare=1
compile=1
while [[ $# -gt 0 ]]; do
  case "$1" in
    -h | --help) usage; exit 0 ;;
    --name) [[ $# -ge 2 ]] || die "--name needs a value"; name="$2"; shift 2 ;;
    --name=*) name="${1#--name=}"; shift ;;
    --no-data) prepare=0; shift ;;
    --no-compile) compile=0; shift ;;
    *) break ;;
  esac
done
resolve_run "$@"
shift

if [[ "$compile" == 1 ]]; then
  compile_for_slice "$experiment" "$@"
fi

if [[ "$prepare" == 1 ]]; then
  DRY_RUN="$DRY_RUN" "$TPU_DIR/data.sh" "$experiment" "$@"
fi

train=("\"\$HOME\"/$VENV_DIR/bin/rnnlab" train --config "$experiment" --workdir "$workdir" "$@")
# The first word is a shell expression ($HOME), the rest are quoted arguments.
train_cmd="${train[0]} $(shjoin "${train[@]:1}")"
env_cmd="export PYTHONUNBUFFERED=1 RNNLAB_DATA_DIR=\"\$HOME\"/$DATA_DIR"
wrapper="tpu/worker.sh $(shquote "$session") \"\$HOME\"/$LOG_DIR $(shquote "$workdir")"
wrapper+=" $LOG_COPY_EVERY --"
inner="cd \"\$HOME\"/$REMOTE_DIR && $env_cmd && exec bash $wrapper $train_cmd"

on_workers "$(one_run_snippet "$session"); $(stop_snippet "$session");\
 mkdir -p \"\$HOME\"/$LOG_DIR && tmux new-session -d -s $(shquote "$session") $(shquote "$inner")"

if [[ "$DRY_RUN" != 1 ]]; then
  echo "started $session on all workers; workdir $workdir" >&2
  echo "logs: tpu/logs.sh $name -f     stop: tpu/stop.sh $name" >&2
fi
