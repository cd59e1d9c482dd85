"""Cloud TPU slices by their accelerator-type names, and their devices on any machine.

``devices("v5e-16")`` returns the 16 chips of a v5e 4x4 slice as compile-only devices: they
carry the slice's real ids, coordinates and host of each chip, so a mesh built on them has
the device order a run gets on the slice, and ``jax.jit(...).lower(...).compile()`` on that
mesh runs libtpu's compiler for the slice. This needs ``libtpu`` installed (``jax[tpu]`` at
the tested jax), not a TPU.

Names follow Cloud TPU's accelerator types (``v5litepod-16`` is also ``v5e-16``); the
topology strings and chips per host are those of MaxText's ``accelerator_to_spec_map`` except
for the single-host 8-chip v5e and v6e machines, whose eight chips sit on one host as on
Cloud TPU. v4 and v5p names count TensorCores (two per chip, one "megacore" device).

Chip figures (Google's published peak dense bfloat16 FLOP/s, HBM capacity and bandwidth):

====  ==============  ========  ===============
chip  bf16 TFLOP/s    HBM       HBM bandwidth
====  ==============  ========  ===============
v4    275             32 GiB    1,228 GB/s
v5e   197             16 GiB    819 GB/s
v5p   459             95 GiB    2,765 GB/s
v6e   918             32 GiB    1,640 GB/s
====  ==============  ========  ===============
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import sys
import tempfile
from collections.abc import Iterator


@dataclasses.dataclass(frozen=True)
class Chip:
    """Published figures of one TPU chip."""

    name: str
    peak_flops: float  # dense bfloat16 FLOP/s
    hbm_bytes: int
    hbm_bandwidth: float  # bytes/s


GiB = 2**30
CHIPS = {
    "v4": Chip("v4", 275e12, 32 * GiB, 1228e9),
    "v5e": Chip("v5e", 197e12, 16 * GiB, 819e9),
    "v5p": Chip("v5p", 459e12, 95 * GiB, 2765e9),
    "v6e": Chip("v6e", 918e12, 32 * GiB, 1640e9),
}


@dataclasses.dataclass(frozen=True)
class Topology:
    """One slice: its accelerator type, libtpu's topology string and host layout."""

    name: str
    chip: Chip
    topology_name: str  # e.g. "v5e:4x4"
    chip_config_name: str  # "default" or "megacore"
    chips_per_host_bounds: tuple[int, int, int]
    chips: int

    @property
    def hosts(self) -> int:
        per_host = self.chips_per_host_bounds[0] * self.chips_per_host_bounds[1]
        return self.chips // (per_host * self.chips_per_host_bounds[2])


def _t(name, chip, topo, config, bounds, chips) -> tuple[str, Topology]:
    return name, Topology(name, CHIPS[chip], topo, config, bounds, chips)


TOPOLOGIES: dict[str, Topology] = dict(
    [
        _t("v5e-4", "v5e", "v5e:2x2", "default", (2, 2, 1), 4),
        _t("v5e-8", "v5e", "v5e:2x4", "default", (2, 4, 1), 8),
        _t("v5e-16", "v5e", "v5e:4x4", "default", (2, 2, 1), 16),
        _t("v5e-32", "v5e", "v5e:4x8", "default", (2, 2, 1), 32),
        _t("v6e-4", "v6e", "v6e:2x2", "default", (2, 2, 1), 4),
        _t("v6e-8", "v6e", "v6e:2x4", "default", (2, 4, 1), 8),
        _t("v6e-16", "v6e", "v6e:4x4", "default", (2, 2, 1), 16),
        _t("v6e-32", "v6e", "v6e:4x8", "default", (2, 2, 1), 32),
        _t("v5p-8", "v5p", "v5:2x2x1", "megacore", (2, 2, 1), 4),
        _t("v5p-16", "v5p", "v5:2x2x2", "megacore", (2, 2, 1), 8),
        _t("v5p-32", "v5p", "v5:2x2x4", "megacore", (2, 2, 1), 16),
        _t("v5p-64", "v5p", "v5:2x4x4", "megacore", (2, 2, 1), 32),
        _t("v4-8", "v4", "v4:2x2x1", "megacore", (2, 2, 1), 4),
        _t("v4-16", "v4", "v4:2x2x2", "megacore", (2, 2, 1), 8),
        _t("v4-32", "v4", "v4:2x2x4", "megacore", (2, 2, 1), 16),
        _t("v4-64", "v4", "v4:2x4x4", "megacore", (2, 2, 1), 32),
    ]
)


def known() -> list[str]:
    """The accepted names (``v5litepod-N`` is an alias of ``v5e-N``)."""
    return list(TOPOLOGIES)


def get(name: str) -> Topology:
    """The slice named ``name`` (``v5e-16``, ``v5litepod-16``, ``v6e-8``, ``v5p-32``, ...).

    Raises:
      ValueError: an unknown name; the message lists the known ones.
    """
    key = re.sub(r"^v5litepod-", "v5e-", str(name).strip().lower())
    if key not in TOPOLOGIES:
        raise ValueError(
            f"unknown TPU topology {name!r}; known: {', '.join(known())} (v5litepod-N is v5e-N)"
        )
    return TOPOLOGIES[key]


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Sends file descriptor 2 to a scratch file while libtpu starts: on a machine without
    a TPU it prints warnings (no accelerator type, no worker hostnames) from C++ that
    Python's logging cannot silence. They are shown again if the block fails."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as scratch:
        os.dup2(scratch.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            scratch.seek(0)
            sys.stderr.write(scratch.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def devices(name: str, slices: int = 1) -> list:
    """Compile-only devices of ``slices`` slices of topology ``name`` (needs ``libtpu``).

    Every device has the ``id``, ``coords``, ``process_index`` (its host) and, for several
    slices, ``slice_index`` it has on Cloud TPU.

    Raises:
      ValueError: an unknown topology or a slice count below 1.
      RuntimeError: libtpu is not installed.
    """
    topo = get(name)
    if isinstance(slices, bool) or not isinstance(slices, int) or slices < 1:
        raise ValueError(f"slices must be a positive int, got {slices!r}")
    import importlib.util

    if importlib.util.find_spec("libtpu") is None:
        raise RuntimeError(
            "compiling for a TPU topology needs libtpu: install jax[tpu] at the tested jax "
            "version (make tpu-compile builds build/venv-tpu with it)"
        )
    from jax.experimental import topologies

    # Compile-only devices open no chip: two compiles on one machine may share libtpu
    # (without this, the second stops at libtpu's lock file).
    os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")
    with _quiet_stderr():
        desc = topologies.get_topology_desc(
            platform="tpu",
            topology_name=topo.topology_name,
            chip_config_name=topo.chip_config_name,
            chips_per_host_bounds=topo.chips_per_host_bounds,
            num_slices=slices,
            wrap=(False, False, False),
        )
    return list(desc.devices)
