#!/usr/bin/env bash
# Runs on a worker, inside the run's tmux session that tpu/run.sh starts: the training
# command, with its output appended to the worker's log file. The log is copied to
# WORKDIR/logs/<hostname>-<start time>.log every LOG_COPY_EVERY seconds and once more at the
# end, so that it outlives the VM; SIGTERM (tpu/stop.sh, a spot preemption) is passed on to
# the trainer, which saves a checkpoint and exits; the exit status is left in
# LOG_DIR/SESSION.status ("running" until then) for tpu/launch.sh.
#
#   tpu/worker.sh SESSION LOG_DIR WORKDIR LOG_COPY_EVERY -- COMMAND [ARGS...]
set -uo pipefail
[[ "${1:-}" == -h || "${1:-}" == --help ]] && { awk 'NR > 1 { if (!/^#/) exit; print }' "$0"; exit 0; }
if [[ $# -lt 6 || "$5" != -- ]]; then
  awk 'NR > 1 { if (!/^#/) exit; print }' "$0" >&2
  exit 2
fi
session="$1" log_dir="$2" workdir="$3" every="$4"
shift 5
host="$(hostname)"
log="$log_dir/$session-$host.log"
status_file="$log_dir/$session.status"
# One copy per start, so that a resumed run does not overwrite the log of the slice before.
copy="$workdir/logs/$host-$(date -u +%Y%m%dT%H%M%SZ).log"
mkdir -p "$log_dir"
echo running >"$status_file"
echo "=== $(date -u +%FT%TZ) start $session on $host ===" >>"$log"

# gcloud storage cp writes to gs:// and to local paths alike.
# https://cloud.google.com/sdk/gcloud/reference/storage/cp
copy_log() {
  gcloud storage cp "$log" "$copy" >/dev/null 2>&1 ||
    echo "warning: could not copy this log to $copy" >>"$log"
}

"$@" >>"$log" 2>&1 &
pid=$!
trap 'kill -TERM "$pid" 2>/dev/null' TERM INT
if [[ "$every" -gt 0 ]]; then
  (while sleep "$every"; do copy_log; done) &
  copier=$!
fi
wait "$pid"
status=$?
# A trapped signal interrupts wait; wait again for the trainer's own exit status.
while kill -0 "$pid" 2>/dev/null; do
  wait "$pid"
  status=$?
done
[[ -n "${copier:-}" ]] && kill "$copier" 2>/dev/null
echo "=== $(date -u +%FT%TZ) exit $status $session on $host ===" >>"$log"
copy_log
echo "$status" >"$status_file"
exit "$status"
