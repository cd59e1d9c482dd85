#!/usr/bin/env bash
# Creates the TPU VM (a single host or a pod slice) described by the settings.
#
#   tpu/create.sh
#
# SPOT=1 or QUEUED=1 request it as a queued resource and wait until it is ACTIVE;
# otherwise `tpu-vm create` asks for on-demand capacity directly.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
[[ "${1:-}" == -h || "${1:-}" == --help ]] && { sed -n '2,7p' "$0"; exit 0; }
load_settings
mapfile -t flags < <(location_flags)

if uses_queued_resource; then
  extra=()
  [[ "$SPOT" == 1 ]] && extra+=(--spot)
  run gcloud compute tpus queued-resources create "$QUEUED_RESOURCE" "${flags[@]}" \
    "--node-id=$TPU_NAME" "--accelerator-type=$ACCELERATOR_TYPE" \
    "--runtime-version=$RUNTIME_VERSION" "${extra[@]}"
  describe=(gcloud compute tpus queued-resources describe "$QUEUED_RESOURCE" "${flags[@]}"
    "--format=value(state.state)")
  if [[ "$DRY_RUN" == 1 ]]; then
    run "${describe[@]}"
    exit 0
  fi
  # Capacity may take minutes to hours; poll until the slice exists.
  while true; do
    state="$("${describe[@]}")"
    echo "queued resource $QUEUED_RESOURCE: $state" >&2
    case "$state" in
      ACTIVE) break ;;
      FAILED | SUSPENDED) die "queued resource $QUEUED_RESOURCE is $state; see tpu/status.sh" ;;
    esac
    sleep 60
  done
else
  run gcloud compute tpus tpu-vm create "$TPU_NAME" "${flags[@]}" \
    "--accelerator-type=$ACCELERATOR_TYPE" "--version=$RUNTIME_VERSION"
fi
