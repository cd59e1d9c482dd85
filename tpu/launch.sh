#!/usr/bin/env bash
# Runs an experiment until it is finished, re-queueing the slice whenever it is preempted:
# the loop for spot capacity.
#
#   tpu/launch.sh [--name RUN_NAME] [--keep] [--no-compile] EXPERIMENT [TRAIN_ARGS...]
#
#   SPOT=1 tpu/launch.sh experiments/charlm.py:tpu
#
# First the run is compiled for ACCELERATOR_TYPE on this machine (rnnlab compile): a run that
# does not compile or fit never requests a slice (--no-compile skips this). Each round: if
# the slice is not ACTIVE it is deleted (when it exists) and requested again
# (tpu/create.sh, which waits for capacity), then set up (tpu/setup.sh); then tpu/run.sh
# starts or resumes the run from its workdir. Every POLL_SECONDS the loop checks whether the
# run is finished (WORKDIR/summary.json, not one left by a preemption), whether the slice is
# still ACTIVE (a preempted spot slice becomes SUSPENDED) and whether worker 0's trainer
# exited. A finished run ends the loop and deletes the slice (--keep keeps it); a trainer
# that failed stops the loop with its exit status; MAX_ATTEMPTS rounds at most. To stop a
# run for good, stop this loop (Ctrl-C) first, then tpu/stop.sh RUN_NAME. Under DRY_RUN=1
# the commands of one round are printed.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
usage() { help_text; }

name=""
keep=0
compile=1
while [[ $# -gt 0 ]]; do
  case "$1" in
    -h | --help) usage; exit 0 ;;
    --name) [[ $# -ge 2 ]] || die "--name needs a value"; name="$2"; shift 2 ;;
    --name=*) name="${1#--name=}"; shift ;;
    --keep) keep=1; shift ;;
    --no-compile) compile=0; shift ;;
    *) break ;;
  esac
done
resolve_run "$@"
shift
status_cmd="cat \"\$HOME\"/$LOG_DIR/$session.status 2>/dev/null || echo none"

say() { echo "launch $name: $*" >&2; }

if [[ "$compile" == 1 ]]; then
  compile_for_slice "$experiment" "$@"
fi

if [[ "$DRY_RUN" == 1 ]]; then
  "$TPU_DIR/create.sh"
  "$TPU_DIR/setup.sh"
  "$TPU_DIR/run.sh" --name "$name" --no-compile "$experiment" "$@"
  WORKER=0 on_workers "$status_cmd"
  "$TPU_DIR/delete.sh" --yes
  exit 0
fi

# Ctrl-C ends the loop even when it lands in a child that handles SIGINT and exits (gcloud,
# python): bash would otherwise go on with the next command of the loop.
trap 'say "interrupted"; exit 130' INT
attempt=0
while true; do
  attempt=$((attempt + 1))
  ((attempt <= MAX_ATTEMPTS)) || die "run $name not finished after $MAX_ATTEMPTS rounds"
  if run_finished "$workdir"; then break; fi
  state="$(slice_state)"
  case "$state" in
    ACTIVE) ;;
    WAITING_FOR_RESOURCES | PROVISIONING | CREATING | ACCEPTED)
      say "slice is $state; waiting"
      (wait_active) || continue ;;
    *)
      say "round $attempt: slice is ${state:-absent}; requesting it"
      if [[ -n "$state" ]]; then
        "$TPU_DIR/delete.sh" --yes || { sleep "$POLL_SECONDS"; continue; }
      fi
      "$TPU_DIR/create.sh" || { sleep "$POLL_SECONDS"; continue; }
      "$TPU_DIR/setup.sh" || { sleep "$POLL_SECONDS"; continue; } ;;
  esac
  say "round $attempt: starting the run"
  "$TPU_DIR/run.sh" --name "$name" --no-compile "$experiment" "$@" || { sleep "$POLL_SECONDS"; continue; }
  stopped=0
  while true; do
    sleep "$POLL_SECONDS"
    if run_finished "$workdir"; then break 2; fi
    state="$(slice_state)"
    if [[ "$state" != ACTIVE ]]; then
      say "slice is ${state:-absent} (preempted?); re-queueing"
      break
    fi
    status="$(WORKER=0 on_workers "$status_cmd" 2>/dev/null | tail -n 1)" || status=unreachable
    case "$status" in
      running) stopped=0 ;;
      unreachable | "") ;;
      0 | none)
        # Stopped by a SIGTERM before the end (or not started). A preempted VM goes down
        # soon after its trainer has saved, and a session just started has not yet written
        # its status: only what two polls in a row see on an ACTIVE slice gets the run again.
        stopped=$((stopped + 1))
        if ((stopped >= 2)); then
          say "no trainer running on worker 0 (status $status); resuming"
          break
        fi ;;
      *) die "the trainer on worker 0 exited with status $status; see tpu/logs.sh $name" ;;
    esac
  done
done

say "finished: $workdir/summary.json"
# The workers copy their logs to the workdir once their trainer has exited: give them up to
# STOP_TIMEOUT seconds before the slice, with its disks, is deleted.
for ((waited = 0; waited < STOP_TIMEOUT; waited += POLL_SECONDS > 0 ? POLL_SECONDS : 1)); do
  statuses="$(on_workers "$status_cmd" 2>/dev/null)" || break
  grep -qx running <<<"$statuses" || break
  sleep "$POLL_SECONDS"
done
if [[ "$keep" == 0 ]]; then
  "$TPU_DIR/delete.sh" --yes
fi
