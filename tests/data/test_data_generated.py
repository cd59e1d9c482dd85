"""The locally generated CTC and video datasets: construction, determinism, registration."""

import numpy as np

import rnnlab.data
from rnnlab.data.generated import digit_images, digit_string, moving_digits


def test_digit_strings_concatenate_whole_signals_with_short_gaps():
    r = np.random.default_rng(0)
    signals = r.normal(size=(6, 40)).astype(np.float32)
    digits = np.arange(6, dtype=np.int32)
    for seed in range(5):
        frames, labels = digit_string(
            np.random.default_rng(seed), signals, digits, max_digits=4, max_gap=3
        )
        assert 1 <= len(labels) <= 4 and frames.shape[1] == 1
        pos = 0
        for k, label in enumerate(labels):
            if k:  # find the next signal after a gap of at most 3 steps
                gap = next(
                    g
                    for g in range(4)
                    if np.array_equal(frames[pos + g : pos + g + 40, 0], signals[label - 1])
                )
                pos += gap
            np.testing.assert_array_equal(frames[pos : pos + 40, 0], signals[label - 1])
            pos += 40
        assert pos == len(frames)


def test_moving_digit_stays_whole_inside_the_canvas():
    image = digit_images()["train"][:1]
    frames = moving_digits(
        np.random.default_rng(1), image, canvas=16, num_frames=12, num_digits=1, max_speed=3.0
    )
    assert frames.shape == (12, 16, 16, 1)
    np.testing.assert_allclose(frames.sum(axis=(1, 2, 3)), image.sum(), rtol=1e-5)
    assert 0.0 <= frames.min() and frames.max() <= 1.0


def test_registered_datasets_are_deterministic_and_split_apart():
    cfg = {"name": "mnist1d_digits", "max_digits": 3, "eval_examples": 8}
    info = rnnlab.data.info(cfg)
    assert info["task"] == "ctc" and info["num_labels"] == 11 and info["seq_len"] == 3 * 40 + 16

    def first(split, **kw):
        it = rnnlab.data.load(kw or cfg, split=split, batch_size=4, seed=0, repeat=False)
        return next(iter(it))

    a, b = first("validation"), first("validation")
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    assert not np.array_equal(a["inputs"], first("test")["inputs"])
    assert a["inputs"].shape == (4, info["seq_len"], 1) and a["targets"].shape == (4, 3)
    assert np.all(a["targets"][np.arange(3)[None, :] >= a["target_lengths"][:, None]] == 0)
    video = {"name": "moving_digits", "canvas": 12, "seq_len": 3, "horizon": 2, "eval_examples": 4}
    v = first("test", **video)
    assert v["inputs"].shape == (4, 3, 12, 12, 1) and v["targets"].shape == (4, 2, 12, 12, 1)
    assert rnnlab.data.info(video)["frame_shape"] == [12, 12, 1]
