#!/usr/bin/env bash
# Runs a shell command on every worker (or the ones in WORKER, e.g. WORKER=0).
#
#   tpu/ssh.sh 'COMMAND'
#   WORKER=0 tpu/ssh.sh 'nproc; df -h ~'
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
[[ "${1:-}" == -h || "${1:-}" == --help ]] && { help_text; exit 0; }
[[ $# -eq 1 ]] || { help_text >&2; die "expected the command as one argument"; }
load_settings
on_workers "$1"
