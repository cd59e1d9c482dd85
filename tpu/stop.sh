#!/usr/bin/env bash
# Stops a run on every worker: SIGTERM to the trainer in its tmux session (it saves a
# checkpoint and exits), then closes the session after at most STOP_TIMEOUT seconds.
#
#   tpu/stop.sh RUN
#
# RUN is the run name or the experiment given to tpu/run.sh. Rerun tpu/run.sh to resume.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
[[ "${1:-}" == -h || "${1:-}" == --help ]] && { help_text; exit 0; }
[[ $# -eq 1 ]] || { help_text >&2; die "expected exactly one RUN"; }
load_settings
on_workers "$(stop_snippet "$(session_name "$(run_name "$1")")")"
