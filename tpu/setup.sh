#!/usr/bin/env bash
# Prepares every worker: syncs the code, installs tmux and uv if missing, creates the
# virtual environment and installs jax[tpu] and the project into it, then prints the
# number of TPU devices JAX sees on each worker.
#
#   tpu/setup.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
[[ "${1:-}" == -h || "${1:-}" == --help ]] && { help_text; exit 0; }
load_settings

DRY_RUN="$DRY_RUN" "$TPU_DIR/sync.sh"

uv='"$HOME"/.local/bin/uv'
venv="\"\$HOME\"/$VENV_DIR"
# pip resolves jax[tpu] together with the project's own jax pin, so jax, jaxlib and libtpu
# come in matching versions.
on_workers "set -e;\
 command -v tmux >/dev/null || { sudo apt-get update -qq && sudo apt-get install -y -qq tmux; };\
 [ -x $uv ] || curl -LsSf https://astral.sh/uv/install.sh | sh;\
 [ -x $venv/bin/python ] || $uv venv --seed --python $(shquote "$PYTHON_VERSION") $venv;\
 $venv/bin/python -m pip install --quiet --upgrade pip;\
 $venv/bin/python -m pip install --quiet 'jax[tpu]' -e \"\$HOME\"/$REMOTE_DIR'[train,gcs]';\
 $venv/bin/python -c 'import jax; print(jax.process_index(), jax.device_count(), jax.devices()[0].device_kind)'"
