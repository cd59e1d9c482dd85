"""Checkpoint fingerprints (rnnlab.train.integrity): the pair of sums modulo 2**32 over each
array's 32-bit words, computed on the host for CPU arrays and on the devices otherwise.
Reference: the definition in the module docstring, summed by a Python loop over the bytes."""

import struct

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest

from rnnlab.train import integrity


def _by_hand(values: np.ndarray) -> str:
    """``(sum_i b_i, sum_i (2 i + 1) b_i) mod 2**32`` with ``b_i`` each element's bits read
    from its little-endian bytes."""
    size = 4 if values.dtype == np.bool_ else values.dtype.itemsize
    data = values.astype(np.uint32).tobytes() if values.dtype == np.bool_ else values.tobytes()
    fmt = {1: "B", 2: "H", 4: "I"}[size]
    words = [struct.unpack_from("<" + fmt, data, k)[0] for k in range(0, len(data), size)]
    first = sum(words) % 2**32
    second = sum((2 * i + 1) * b for i, b in enumerate(words)) % 2**32
    return f"{first:08x}-{second:08x}"


def _tree():
    rng = np.random.default_rng(0)
    return {
        "w": rng.normal(size=(300, 257)).astype(np.float32),  # the weighted sum wraps
        "h": rng.normal(size=(33,)).astype(ml_dtypes.bfloat16),
        "n": np.arange(-5, 6, dtype=np.int32),
        "mask": np.array([True, False, True, True]),
        "bytes": rng.integers(0, 256, size=(17,), dtype=np.uint8),
        "scalar": np.float32(-2.5),
    }


def test_fingerprints_of_cpu_arrays_follow_the_definition():
    tree = _tree()
    got = integrity.fingerprint(jax.tree.map(jnp.asarray, tree))
    want = {f"['{k}']": _by_hand(np.asarray(v)) for k, v in tree.items()}
    assert got == want


@pytest.mark.parametrize("on_host", [True, False])
def test_host_and_device_sums_agree_and_see_one_flipped_bit(monkeypatch, on_host):
    monkeypatch.setattr(integrity, "_on_host", lambda x: on_host)
    tree = jax.tree.map(jnp.asarray, _tree())
    before = integrity.fingerprint(tree)
    assert before == {f"['{k}']": _by_hand(np.asarray(v)) for k, v in _tree().items()}
    w = np.asarray(tree["w"]).copy()
    w.view(np.uint32)[123, 45] ^= 1 << 7
    after = integrity.fingerprint({**tree, "w": jnp.asarray(w)})
    assert [k for k in before if before[k] != after[k]] == ["['w']"]
