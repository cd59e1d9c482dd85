#!/usr/bin/env bash
# Deletes the TPU VM (and its queued resource). Billing stops when this completes; the
# workdirs on Cloud Storage are kept.
#
#   tpu/delete.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
[[ "${1:-}" == -h || "${1:-}" == --help ]] && { sed -n '2,5p' "$0"; exit 0; }
load_settings
mapfile -t flags < <(location_flags)
if uses_queued_resource; then
  # --force deletes the node together with the queued resource.
  run gcloud compute tpus queued-resources delete "$QUEUED_RESOURCE" "${flags[@]}" --force
else
  run gcloud compute tpus tpu-vm delete "$TPU_NAME" "${flags[@]}"
fi
