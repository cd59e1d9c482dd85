#!/usr/bin/env bash
# Deletes the TPU VM (and its queued resource). Billing stops when this completes; the
# workdirs and the prepared data on Cloud Storage are kept.
#
#   tpu/delete.sh [--yes]
#
# gcloud asks for confirmation unless --yes is given.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
usage() { help_text; }
quiet=()
case "${1:-}" in
  -h | --help) usage; exit 0 ;;
  --yes) quiet=(--quiet) ;;
  "") ;;
  *) usage >&2; die "unknown argument '$1'" ;;
esac
load_settings
mapfile -t flags < <(location_flags)
if uses_queued_resource; then
  # --force deletes the node together with the queued resource.
  # https://cloud.google.com/sdk/gcloud/reference/compute/tpus/queued-resources/delete
  run gcloud compute tpus queued-resources delete "$QUEUED_RESOURCE" "${flags[@]}" --force \
    "${quiet[@]}"
else
  # https://cloud.google.com/sdk/gcloud/reference/compute/tpus/tpu-vm/delete
  run gcloud compute tpus tpu-vm delete "$TPU_NAME" "${flags[@]}" "${quiet[@]}"
fi
