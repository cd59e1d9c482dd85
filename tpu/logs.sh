#!/usr/bin/env bash
# Shows the log of a run from every worker, each line prefixed with the worker's hostname.
#
#   tpu/logs.sh RUN [-f] [-n LINES] [--save DIR]
#
# RUN is the run name or the experiment given to tpu/run.sh. -f follows the logs (Ctrl-C
# stops following, not the run). --save DIR copies each worker's whole log to DIR/<worker>.log.
# WORKER=0 tpu/logs.sh RUN shows worker 0 only (process 0, the one that writes summaries).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
usage() { help_text; }

run=""
follow=0
lines=100
save=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    -h | --help) usage; exit 0 ;;
    -f | --follow) follow=1; shift ;;
    -n) [[ $# -ge 2 ]] || die "-n needs a value"; lines="$2"; shift 2 ;;
    --save) [[ $# -ge 2 ]] || die "--save needs a directory"; save="$2"; shift 2 ;;
    -*) die "unknown option $1" ;;
    *) [[ -z "$run" ]] || die "only one RUN, got '$run' and '$1'"; run="$1"; shift ;;
  esac
done
[[ -n "$run" ]] || { usage >&2; die "RUN is missing"; }
[[ "$lines" =~ ^[0-9]+$ ]] || die "-n must be a number of lines, got '$lines'"
load_settings

session="$(session_name "$(run_name "$run")")"
log="$(log_file "$session")"

if [[ -n "$save" ]]; then
  run mkdir -p "$save"
  on_workers "cat $log" "--output-directory=$save"
  exit 0
fi
tail_flags="-n $lines"
[[ "$follow" == 1 ]] && tail_flags+=" -F"
on_workers "tail $tail_flags $log | sed -u \"s/^/[\$(hostname)] /\""
