"""Integrity of checkpoints: fingerprints written with each checkpoint and checked on restore.

A checkpoint can be damaged after it was written (a flipped bit on disk, a file removed or
cut short by a copy). orbax detects some of this (unreadable metadata, missing chunks) but
not a changed byte inside an array, which would resume training from silently wrong values.
So every save records, next to the data-iterator state, a fingerprint of every array of the
train state and a SHA-256 of the JSON it saves; :func:`check` recomputes both after a restore.

The array fingerprint is computed on the devices, so sharded arrays need no gathering
(arrays already in this process's CPU memory are summed by NumPy, with no program to
compile): with
``b_i`` the bits of element ``i`` as an unsigned 32-bit integer (wider types are split into
32-bit words), it is the pair ``(sum_i b_i, sum_i (2 i + 1) b_i)`` modulo ``2**32``. A single
changed bit changes the first sum by ``+-2**k`` (never 0 modulo ``2**32``), and the odd
weights make swapped or shifted elements show in the second.

The dataset's identity (task, vocabulary) is recorded too, so that resuming or evaluating a
checkpoint on another dataset fails with a message instead of a shape error or, worse,
silently mapping token ids to the wrong characters.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

KEY = "integrity"


class CorruptCheckpointError(ValueError):
    """A checkpoint that cannot be read back, or reads back different from what was saved."""

    def __init__(self, step: int | None, reason: str):
        where = f"checkpoint {step}" if step is not None else "checkpoint"
        super().__init__(f"{where} is corrupt: {reason}")
        self.step, self.reason = step, reason


class IncompatibleCheckpointError(ValueError):
    """A checkpoint of another model, optimizer or dataset than the config describes: bad
    input, not damage (the checkpoint is left where it is)."""


def _words(x: jax.Array) -> jax.Array:
    """The bits of every element of ``x`` as a flat ``uint32`` vector."""
    if x.dtype == jnp.bool_:
        return x.astype(jnp.uint32).reshape(-1)
    size = jnp.dtype(x.dtype).itemsize
    if size > 4:  # 64-bit values become two 32-bit words each
        return jax.lax.bitcast_convert_type(x, jnp.uint32).reshape(-1)
    unsigned = {1: jnp.uint8, 2: jnp.uint16, 4: jnp.uint32}[size]
    return jax.lax.bitcast_convert_type(x, unsigned).astype(jnp.uint32).reshape(-1)


def _leaf_sums(x: jax.Array) -> jax.Array:
    words = _words(jnp.asarray(x))
    weights = jnp.arange(words.shape[0], dtype=jnp.uint32) * jnp.uint32(2) + jnp.uint32(1)
    return jnp.stack([jnp.sum(words, dtype=jnp.uint32), jnp.sum(words * weights, dtype=jnp.uint32)])


@jax.jit
def _all_sums(leaves: list[jax.Array]) -> list[jax.Array]:
    return [_leaf_sums(x) for x in leaves]


def _on_host(x: Any) -> bool:
    """Whether ``x`` is a jax array whose fingerprint the host computes as cheaply: every
    shard in this process's CPU memory, elements of at most 32 bits."""
    return (
        isinstance(x, jax.Array)
        and not jax.dtypes.issubdtype(x.dtype, jax.dtypes.extended)
        and (x.dtype == np.bool_ or np.dtype(x.dtype).itemsize <= 4)
        and x.is_fully_addressable
        and all(d.platform == "cpu" for d in x.sharding.device_set)
    )


def _host_sums(x: jax.Array) -> np.ndarray:
    """:func:`_leaf_sums` in NumPy (the same modulo-``2**32`` arithmetic in ``uint32``)."""
    a = np.asarray(x)
    if a.dtype == np.bool_:
        words = a.astype(np.uint32).reshape(-1)
    else:
        unsigned = {1: np.uint8, 2: np.uint16, 4: np.uint32}[a.dtype.itemsize]
        words = np.ascontiguousarray(a).view(unsigned).astype(np.uint32).reshape(-1)
    weights = np.arange(words.shape[0], dtype=np.uint32) * np.uint32(2) + np.uint32(1)
    return np.array([np.sum(words, dtype=np.uint32), np.sum(words * weights, dtype=np.uint32)])


def fingerprint(tree: Any) -> dict[str, str]:
    """``{leaf path: "xxxxxxxx-xxxxxxxx"}`` for every array of ``tree`` (module docstring)."""
    paths_leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    if not paths_leaves:
        return {}
    leaves = [leaf for _, leaf in paths_leaves]
    if all(_on_host(leaf) for leaf in leaves):
        # On CPU the arrays are already in host memory: NumPy sums them without compiling
        # _all_sums, a program of every leaf that costs about a second per process.
        sums = [_host_sums(leaf) for leaf in leaves]
    else:
        sums = jax.device_get(_all_sums(leaves))
    return {
        jax.tree_util.keystr(path): f"{int(s[0]):08x}-{int(s[1]):08x}"
        for (path, _), s in zip(paths_leaves, sums, strict=True)
    }


def digest(obj: Any) -> str:
    """SHA-256 of ``obj``'s canonical JSON (sorted keys, no spaces)."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=True)
    return hashlib.sha256(text.encode()).hexdigest()


def seal(state: Any, extra: Mapping[str, Any]) -> dict[str, Any]:
    """``extra`` plus the fingerprints of ``state`` and of ``extra`` itself, under :data:`KEY`."""
    body = {k: v for k, v in extra.items() if k != KEY}
    return {**body, KEY: {"state": fingerprint(state), "extra": digest(body)}}


def check(step: int | None, state: Any, extra: Mapping[str, Any]) -> dict[str, Any]:
    """Raises :class:`CorruptCheckpointError` naming the first array (or the JSON) that
    differs from what was saved; returns ``extra`` without the seal. Checkpoints written
    before seals existed pass unchecked."""
    body = {k: v for k, v in extra.items() if k != KEY}
    seal_ = extra.get(KEY)
    if seal_ is None:
        return body
    if not isinstance(seal_, Mapping) or digest(body) != seal_.get("extra"):
        raise CorruptCheckpointError(step, "the JSON item 'extra' differs from what was saved")
    want = seal_.get("state") or {}
    got = fingerprint(state)
    if set(want) != set(got):
        missing = sorted(set(want) ^ set(got))
        raise CorruptCheckpointError(step, f"arrays {missing[:3]} are missing or unexpected")
    for path in sorted(want):
        if want[path] != got[path]:
            raise CorruptCheckpointError(
                step, f"array state{path} reads back different from what was saved"
            )
    return body


# -- dataset identity ------------------------------------------------------------------------

# The fields of a dataset description that a trained model depends on.
_IDENTITY_FIELDS = (
    "task",
    "vocab_size",
    "num_classes",
    "input_features",
    "output_features",
    "source_vocab_size",
    "target_vocab_size",
)


def dataset_identity(info: Mapping[str, Any]) -> dict[str, Any]:
    """What a checkpoint records of the dataset it was trained on: the sizes the model's
    shapes depend on and a digest of each vocabulary (token id -> token)."""
    out = {k: info[k] for k in _IDENTITY_FIELDS if k in info and _jsonable(info[k])}
    for name in ("vocab", "source_vocab", "target_vocab"):
        if name in info and info[name] is not None:
            out[f"{name}_sha256"] = digest([str(t) for t in info[name]])
    return out


def _jsonable(value: Any) -> bool:
    return isinstance(value, str | int | float | bool) and not isinstance(value, np.generic)


def check_dataset(saved: Mapping[str, Any] | None, info: Mapping[str, Any], what: str) -> None:
    """Raises ValueError when the dataset described by ``info`` is not the one the
    checkpoint (``saved`` identity) was trained on, naming each field that differs."""
    if not saved:
        return
    now = dataset_identity(info)
    diffs = [k for k in sorted(set(saved) | set(now)) if saved.get(k) != now.get(k)]
    if not diffs:
        return
    parts = []
    for k in diffs:
        if k.endswith("_sha256"):
            parts.append(f"{k[: -len('_sha256')]} (same tokens in the same order) differs")
        else:
            parts.append(f"{k}: checkpoint {saved.get(k)!r}, dataset {now.get(k)!r}")
    raise IncompatibleCheckpointError(
        f"{what} was trained on another dataset than data.name={info.get('name')!r} gives: "
        + "; ".join(parts)
        + ". Use the data options the checkpoint was trained with, or another workdir."
    )
