#!/usr/bin/env bash
# Creates the TPU VM (a single host or a pod slice) described by the settings.
#
#   tpu/create.sh
#
# By default the slice is requested as a queued resource (QUEUED=1) and the script waits
# until it is ACTIVE: SPOT=1 for spot capacity, RESERVED=1 for a reservation, neither for
# on-demand; VALID_UNTIL=6h drops the request if it is not filled in that time. QUEUED=0
# asks `tpu-vm create` for the capacity directly, failing at once if the zone has none.
# NETWORK, SUBNETWORK, SERVICE_ACCOUNT and INTERNAL_IPS=1 (no external IP addresses) apply
# to both.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
[[ "${1:-}" == -h || "${1:-}" == --help ]] && { help_text; exit 0; }
load_settings
mapfile -t flags < <(location_flags)

# Flags both create commands document with the same meaning.
common=()
[[ -n "$NETWORK" ]] && common+=("--network=$NETWORK")
[[ -n "$SUBNETWORK" ]] && common+=("--subnetwork=$SUBNETWORK")
[[ -n "$SERVICE_ACCOUNT" ]] && common+=("--service-account=$SERVICE_ACCOUNT")
[[ "$INTERNAL_IPS" == 1 ]] && common+=(--internal-ips)
[[ "$SPOT" == 1 ]] && common+=(--spot)
[[ "$RESERVED" == 1 ]] && common+=(--reserved)

if uses_queued_resource; then
  [[ -n "$VALID_UNTIL" ]] && common+=("--valid-until-duration=$VALID_UNTIL")
  # gcloud compute tpus queued-resources create QUEUED_RESOURCE --zone=ZONE
  #   --node-id=NODE_ID --accelerator-type=TYPE --runtime-version=VERSION
  #   [--spot | --reserved] [--valid-until-duration=DURATION] [--network=NETWORK]
  #   [--subnetwork=SUBNETWORK] [--service-account=ACCOUNT] [--internal-ips]
  # https://cloud.google.com/sdk/gcloud/reference/compute/tpus/queued-resources/create
  # https://cloud.google.com/tpu/docs/queued-resources
  run gcloud compute tpus queued-resources create "$QUEUED_RESOURCE" "${flags[@]}" \
    "--node-id=$TPU_NAME" "--accelerator-type=$ACCELERATOR_TYPE" \
    "--runtime-version=$RUNTIME_VERSION" "${common[@]}"
  if [[ "$DRY_RUN" == 1 ]]; then
    run gcloud compute tpus queued-resources describe "$QUEUED_RESOURCE" "${flags[@]}" \
      "--format=value(state.state)"
    exit 0
  fi
  # Capacity may take minutes to hours; poll until the slice exists.
  wait_active
else
  # gcloud compute tpus tpu-vm create TPU --zone=ZONE --accelerator-type=TYPE
  #   --version=VERSION [--spot | --reserved] [--network=NETWORK] [--subnetwork=SUBNETWORK]
  #   [--service-account=ACCOUNT] [--internal-ips]
  # https://cloud.google.com/sdk/gcloud/reference/compute/tpus/tpu-vm/create
  run gcloud compute tpus tpu-vm create "$TPU_NAME" "${flags[@]}" \
    "--accelerator-type=$ACCELERATOR_TYPE" "--version=$RUNTIME_VERSION" "${common[@]}"
fi
