#!/usr/bin/env bash
# Prepares an experiment's data once for the whole slice: worker 0 fetches what DATA_STORE
# already holds, prepares what is missing and copies the result back to DATA_STORE; then
# every worker fetches DATA_STORE into its DATA_DIR. A new slice (after a preemption, say)
# finds the data in DATA_STORE and prepares nothing. tpu/run.sh does this before each run.
#
#   tpu/data.sh EXPERIMENT [TRAIN_ARGS...]
#
# DATA_DIR (default rnnlab-data, in the home directory of every worker, outside the code
# folder that tpu/sync.sh replaces) is what runs see as $RNNLAB_DATA_DIR. DATA_STORE
# defaults to gs://BUCKET/WORKDIR_PREFIX-data. Nothing here deletes data: the copies only
# add and update files. --config.data.* overrides in TRAIN_ARGS are applied.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
usage() { help_text; }
[[ "${1:-}" == -h || "${1:-}" == --help ]] && { usage; exit 0; }
[[ $# -ge 1 ]] || { usage >&2; die "EXPERIMENT is missing"; }
load_settings
resolve_storage

data="\"\$HOME\"/$DATA_DIR"
store="$(shquote "$DATA_STORE")"
# gcloud storage rsync SOURCE DESTINATION --recursive (no --delete-unmatched-destination-objects:
# nothing is ever removed). https://cloud.google.com/sdk/gcloud/reference/storage/rsync
pull="gcloud storage rsync $store $data --recursive"
push="gcloud storage rsync $data $store --recursive"
# https://cloud.google.com/sdk/gcloud/reference/storage/ls
stored="gcloud storage ls $store >/dev/null 2>&1"

WORKER=0 on_workers "set -e; mkdir -p $data; if $stored; then $pull; fi;\
 cd \"\$HOME\"/$REMOTE_DIR && export RNNLAB_DATA_DIR=$data &&\
 \"\$HOME\"/$VENV_DIR/bin/python tpu/prepare_data.py $(shjoin "$@"); $push"
WORKER=all on_workers "set -e; mkdir -p $data; $pull"
