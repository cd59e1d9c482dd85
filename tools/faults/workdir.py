"""Reading and damaging a run's workdir: the final state, the metric log, corruption.

The suite compares runs by their last checkpoint, read back as raw arrays (no model, no
config): every leaf of the train state (step, parameters, optimizer state, random key,
carried recurrent state) must be bit-identical to the uninterrupted reference run.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from tools.faults.process import committed_steps


def final_state(workdir: Path, step: int | None = None) -> dict[str, np.ndarray]:
    """``{leaf path: array}`` of checkpoint ``step`` (default: the newest) of ``workdir``."""
    import jax
    import orbax.checkpoint as ocp

    steps = committed_steps(workdir)
    if not steps:
        raise FileNotFoundError(f"no checkpoint in {workdir}")
    step = steps[-1] if step is None else step
    path = (Path(workdir) / "checkpoints" / str(step) / "state").resolve()
    with ocp.StandardCheckpointer() as ckptr:
        tree = ckptr.restore(path)
    flat = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {jax.tree_util.keystr(p): np.asarray(x) for p, x in flat}


def differences(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> list[str]:
    """Leaf paths that are missing, extra, or not bit-identical (dtype, shape, bytes)."""
    out = sorted(set(got) ^ set(want))
    for k in sorted(set(got) & set(want)):
        a, b = got[k], want[k]
        if a.dtype != b.dtype or a.shape != b.shape or a.tobytes() != b.tobytes():
            out.append(k)
    return out


def read_metrics(workdir: Path) -> list[dict[str, Any]]:
    from rnnlab.train.metric_log import read

    return read(str(Path(workdir) / "metrics.jsonl"))


def train_log(workdir: Path) -> list[tuple[int, float]]:
    """``(step, loss)`` of every train record, in file order."""
    return [(int(r["step"]), r["loss"]) for r in read_metrics(workdir) if r["split"] == "train"]


def summary(workdir: Path) -> dict[str, Any]:
    with open(Path(workdir) / "summary.json") as f:
        return json.load(f)


# -- damage ----------------------------------------------------------------------------------


def step_dir(workdir: Path, step: int) -> Path:
    return Path(workdir) / "checkpoints" / str(step)


def flip_bytes(workdir: Path, step: int) -> list[Path]:
    """Flips one bit in the middle of every array data file of checkpoint ``step``."""
    files = [
        p
        for p in sorted((step_dir(workdir, step) / "state").rglob("*"))
        if p.is_file() and p.parent.name == "d" and p.stat().st_size > 0
    ]
    for p in files:
        data = bytearray(p.read_bytes())
        data[len(data) // 2] ^= 0x10
        p.write_bytes(bytes(data))
    return files


def truncate_metadata(workdir: Path, step: int) -> Path:
    """Cuts the array metadata of checkpoint ``step`` to half its length."""
    p = step_dir(workdir, step) / "state" / "_METADATA"
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    return p


def remove_files(workdir: Path, step: int) -> list[Path]:
    """Removes the JSON item (data position) and the array manifest of checkpoint ``step``."""
    gone = [step_dir(workdir, step) / "extra" / "metadata", step_dir(workdir, step) / "state"]
    for p in gone:
        shutil.rmtree(p) if p.is_dir() else p.unlink()
    return gone


def plant_pickles(workdir: Path, marker: Path, *, replace: bool = False) -> list[Path]:
    """Puts pickles that would create ``marker`` when unpickled where a loader might look:
    ``.pkl``/``.npy`` files in and next to every checkpoint, and with ``replace`` in place of
    files orbax reads (its legacy ``checkpoint`` file, the JSON item, the sharding metadata)."""
    import pickle

    blob = pickle.dumps(_Payload(str(marker)))
    planted = []
    for step in committed_steps(workdir):
        d = step_dir(workdir, step)
        names = ["state.pkl", "extra/data.pkl", "state/arrays.npy"]
        if replace:  # orbax's legacy msgpack file, the JSON item, the sharding metadata
            names += ["state/checkpoint", "extra/metadata", "state/_sharding"]
        for rel in names:
            p = d / rel
            p.write_bytes(blob)
            planted.append(p)
    for name in ("checkpoint.pkl", "state.npy", "data.pickle"):
        p = Path(workdir) / name
        p.write_bytes(blob)
        planted.append(p)
    return planted


class _Payload:
    """Unpickling this creates the file ``path``: proof that a loader ran a pickle."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (Path.touch, (Path(self.path),))
