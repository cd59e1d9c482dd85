"""Tests that need libtpu (``jax[tpu]`` at the tested jax): compiles for Cloud TPU slices
and the batch layout on their devices. ``make tpu-compile`` runs them in build/venv-tpu;
the main suite (``pytest tests``, no libtpu) does not collect this directory."""

import os

import jax

# This machine's backend stays the CPU; the slices' devices come from their topologies.
if os.environ.get("JAX_PLATFORMS") is None:
    jax.config.update("jax_platforms", "cpu")
