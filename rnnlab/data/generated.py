"""Locally generated data for the speech-recognition and video experiments.

- ``mnist1d_digits`` (task ``"ctc"``): digit strings read aloud, MNIST-1D style. Each example
  concatenates the 40-step MNIST-1D signals (Greydanus 2020) of 1 to ``max_digits`` digits,
  separated by gaps of 0 to ``max_gap`` near-silent steps, with the digit sequence as the
  label and no alignment. Labels are ``digit + 1``; 0 is the CTC blank.
- ``moving_digits`` (task ``"video"``): scikit-learn's 8x8 handwritten digits (1,797 images)
  bouncing inside a square canvas, Moving-MNIST style (Srivastava et al. 2015). ``inputs``
  are the first ``seq_len`` frames and ``targets`` the next ``horizon`` ones, in ``[0, 1]``.

Both draw example ``i`` of a split from ``numpy.random.default_rng([seed, split, i])`` as the
other synthetic tasks do: training streams are infinite and follow the run's seed;
validation and test are fixed sets of ``eval_examples`` drawn with ``data_seed``. The source
signals and images are split three ways (train / validation / test) so that no evaluation
example reuses a training digit.

The generators are plain NumPy; :func:`register_datasets` (run on import) registers both
with :mod:`rnnlab.data`, so this module belongs to the harness and the core never imports
it. ``mnist1d`` and ``scikit-learn`` come with the ``train`` extra.
"""

from __future__ import annotations

import dataclasses
import functools
import threading
from typing import Any

import numpy as np

SPLIT_INDEX = {"train": 0, "validation": 1, "test": 2}
SIGNAL_LEN = 40  # MNIST-1D's sequence length


# -- digit strings for CTC ------------------------------------------------------------------
_LOCK = threading.Lock()


def mnist1d_pools() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """MNIST-1D signals and labels per split: its 4,000 training examples, and its 1,000 test
    examples halved into validation and test (generated locally, seed 42)."""
    with _LOCK:  # data-loading threads would otherwise build it concurrently
        return _mnist1d_pools()


@functools.lru_cache(maxsize=1)
def _mnist1d_pools() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    from mnist1d.data import get_dataset_args, make_dataset

    # make_dataset seeds NumPy's global generator; the caller's state is put back after.
    saved = np.random.get_state()
    try:
        d = make_dataset(get_dataset_args())
    finally:
        np.random.set_state(saved)
    x, y = d["x"].astype(np.float32), d["y"].astype(np.int32)
    xt, yt = d["x_test"].astype(np.float32), d["y_test"].astype(np.int32)
    half = len(yt) // 2
    return {"train": (x, y), "validation": (xt[:half], yt[:half]), "test": (xt[half:], yt[half:])}


def digit_string(
    rng: np.random.Generator,
    signals: np.ndarray,
    digits: np.ndarray,
    *,
    max_digits: int,
    max_gap: int,
    noise: float = 0.02,
) -> tuple[np.ndarray, np.ndarray]:
    """One utterance: ``(frames [T, 1], labels [U])`` with labels ``digit + 1``."""
    count = int(rng.integers(1, max_digits + 1))
    picks = rng.integers(0, len(digits), count)
    parts = []
    for k, i in enumerate(picks):
        if k:
            gap = int(rng.integers(0, max_gap + 1))
            parts.append(rng.normal(0.0, noise, gap).astype(np.float32))
        parts.append(signals[i])
    frames = np.concatenate(parts)[:, None].astype(np.float32)
    return frames, (digits[picks] + 1).astype(np.int32)


def _ctc_info(cfg: Any) -> dict[str, Any]:
    max_digits = cfg["max_digits"]
    max_gap = cfg["max_gap"]
    return {
        "task": "ctc",
        "input_features": 1,
        "num_labels": 11,
        "blank_id": 0,
        "max_digits": max_digits,
        "max_gap": max_gap,
        "seq_len": max_digits * SIGNAL_LEN + (max_digits - 1) * max_gap,
        "eval_examples": cfg["eval_examples"],
    }


def _ctc_example(rng, info, split) -> dict[str, np.ndarray]:
    signals, digits = mnist1d_pools()[split]
    frames, labels = digit_string(
        rng, signals, digits, max_digits=info["max_digits"], max_gap=info["max_gap"]
    )
    inputs = np.zeros((info["seq_len"], 1), np.float32)
    inputs[: len(frames)] = frames
    targets = np.zeros(info["max_digits"], np.int32)
    targets[: len(labels)] = labels
    return {
        "inputs": inputs,
        "input_lengths": np.int32(len(frames)),
        "targets": targets,
        "target_lengths": np.int32(len(labels)),
    }


# -- moving digits for video ----------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def digit_images() -> dict[str, np.ndarray]:
    """scikit-learn's 8x8 digits in ``[0, 1]``, split 1,400 / 197 / 200 in their order."""
    from sklearn.datasets import load_digits

    images = (load_digits().images / 16.0).astype(np.float32)
    return {"train": images[:1400], "validation": images[1400:1597], "test": images[1597:]}


def moving_digits(
    rng: np.random.Generator,
    images: np.ndarray,
    *,
    canvas: int,
    num_frames: int,
    num_digits: int,
    scale: int = 1,
    max_speed: float = 2.0,
) -> np.ndarray:
    """``num_frames`` frames ``[T, canvas, canvas, 1]`` of digits moving in straight lines and
    bouncing off the edges; overlapping digits combine by maximum."""
    frames = np.zeros((num_frames, canvas, canvas), np.float32)
    for _ in range(num_digits):
        img = images[rng.integers(0, len(images))]
        if scale > 1:
            img = np.kron(img, np.ones((scale, scale), np.float32))
        size = img.shape[0]
        room = canvas - size
        pos = rng.uniform(0, room, 2)
        angle = rng.uniform(0, 2 * np.pi)
        vel = rng.uniform(1.0, max_speed) * np.array([np.sin(angle), np.cos(angle)])
        for t in range(num_frames):
            r, c = np.rint(pos).astype(int)
            view = frames[t, r : r + size, c : c + size]
            np.maximum(view, img, out=view)
            pos = pos + vel
            for d in range(2):  # reflect off the walls
                if pos[d] < 0:
                    pos[d], vel[d] = -pos[d], -vel[d]
                elif pos[d] > room:
                    pos[d], vel[d] = 2 * room - pos[d], -vel[d]
    return frames[..., None]


def _video_info(cfg: Any) -> dict[str, Any]:
    canvas = cfg["canvas"]
    scale = cfg["digit_scale"]
    if canvas < 8 * scale + 1:
        raise ValueError(f"canvas must exceed the digit size {8 * scale}, received {canvas}")
    return {
        "task": "video",
        "frame_shape": [canvas, canvas, 1],
        "seq_len": cfg["seq_len"],
        "horizon": cfg["horizon"],
        "num_digits": cfg["num_digits"],
        "digit_scale": scale,
        "eval_examples": cfg["eval_examples"],
    }


def _video_example(rng, info, split) -> dict[str, np.ndarray]:
    frames = moving_digits(
        rng,
        digit_images()[split],
        canvas=info["frame_shape"][0],
        num_frames=info["seq_len"] + info["horizon"],
        num_digits=info["num_digits"],
        scale=info["digit_scale"],
    )
    return {"inputs": frames[: info["seq_len"]], "targets": frames[info["seq_len"] :]}


# -- registration with rnnlab.data ----------------------------------------------------------
def _loader(make):
    """A ``load`` whose examples are independent draws ``make(rng, info, split)``."""
    from rnnlab.data import pipeline, synthetic

    def load(cfg, info, *, split, **shard):
        ds, num_batches, stream_seed = synthetic.index_batches(cfg, split=split, **shard)

        def collate(indices):
            rows = [
                make(synthetic.example_rng(stream_seed, split, max(int(i), 0)), info, split)
                for i in indices
            ]
            batch = {k: np.stack([r[k] for r in rows]) for k in rows[0]}
            batch["weights"] = np.array([int(i) >= 0 for i in indices], np.float32)
            return batch

        ds = ds.batch(shard["batch_size"], drop_remainder=True, batch_fn=collate)
        return ds.to_iter_dataset(pipeline.read_options(cfg)), num_batches

    return load


def register_datasets() -> None:
    """Registers ``mnist1d_digits`` and ``moving_digits`` with :mod:`rnnlab.data`."""
    from rnnlab.data.registry import Dataset, register
    from rnnlab.data.synthetic import Generated
    from rnnlab.options import COUNT, POSITIVE, opt

    @dataclasses.dataclass(frozen=True)
    class DigitStrings(Generated):
        max_digits: int = opt(5, "most digits in a string", POSITIVE)
        max_gap: int = opt(8, "most blank steps between two digits", COUNT)

    @dataclasses.dataclass(frozen=True)
    class MovingDigits(Generated):
        canvas: int = opt(32, "frame height and width in pixels", POSITIVE)
        digit_scale: int = opt(1, "digit size: 8 * digit_scale pixels", POSITIVE)
        seq_len: int = opt(10, "input frames", POSITIVE)
        horizon: int = opt(10, "frames to predict", POSITIVE)
        num_digits: int = opt(2, "digits moving in each clip", POSITIVE)

    register(
        Dataset(
            "mnist1d_digits",
            "ctc",
            _ctc_info,
            _loader(_ctc_example),
            "MNIST-1D digit strings",
            DigitStrings,
        )
    )
    register(
        Dataset(
            "moving_digits",
            "video",
            _video_info,
            _loader(_video_example),
            "moving digits",
            MovingDigits,
        )
    )


register_datasets()
