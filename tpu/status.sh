#!/usr/bin/env bash
# Shows the state of the TPU VM (and of its queued resource) and the tmux sessions (runs)
# on every worker.
#
#   tpu/status.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
[[ "${1:-}" == -h || "${1:-}" == --help ]] && { help_text; exit 0; }
load_settings
mapfile -t flags < <(location_flags)
if uses_queued_resource; then
  run gcloud compute tpus queued-resources describe "$QUEUED_RESOURCE" "${flags[@]}"
fi
run gcloud compute tpus tpu-vm describe "$TPU_NAME" "${flags[@]}" \
  "--format=table(name.basename(),state,acceleratorType,health,schedulingConfig)"
on_workers "echo \"\$(hostname): \$(tmux list-sessions -F '#{session_name}' 2>/dev/null | tr '\n' ' ')\""
