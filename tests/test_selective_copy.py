"""Selective copying (experiments/selective_copy.py): the loss and the accuracy count the
marker steps only, and the CPU-sized smoke variant trains end to end."""

import json
import math
from pathlib import Path

import jax.numpy as jnp
import numpy as np

import rnnlab.data as data
from rnnlab import cli
from rnnlab.tasks import registry as tasks

REPO = Path(__file__).resolve().parents[1]


def _batch():
    cfg = {"name": "selective_copy", "seq_len": 20, "num_symbols": 6, "copy_len": 4}
    return data.info(cfg), next(data.load(cfg, split="train", batch_size=4, seed=0))


def _means(sums):
    return {k: float(s) / float(w) for k, (s, w) in sums.items()}


def test_metrics_count_the_marker_steps_only():
    info, batch = _batch()
    y = batch["targets"]
    markers = np.arange(y.shape[1]) >= 20
    # Right at the markers and wrong everywhere else: accuracy 1, loss log(1 + (V-1)e^-2).
    right = np.where(markers, y, (y + 1) % info["vocab_size"])
    logits = 2.0 * np.eye(info["vocab_size"], dtype=np.float32)[right]
    copy = tasks.get("copy")
    m = _means(copy.metrics(jnp.asarray(logits), {}, batch))
    assert m["accuracy"] == 1.0
    assert math.isclose(
        m["loss"], math.log1p((info["vocab_size"] - 1) * math.exp(-2)), rel_tol=1e-5
    )
    # Right everywhere but at the markers: accuracy 0.
    wrong = np.where(markers, (y + 1) % info["vocab_size"], y)
    logits = 2.0 * np.eye(info["vocab_size"], dtype=np.float32)[wrong]
    assert _means(copy.metrics(jnp.asarray(logits), {}, batch))["accuracy"] == 0.0


def test_smoke_variant_trains_and_scores_the_test_split(tmp_path):
    workdir = tmp_path / "selcopy"
    spec = str(REPO / "experiments" / "selective_copy.py") + ":lru,small"
    assert cli.main(["train", "--config", spec, "--workdir", str(workdir)]) == 0
    assert cli.main(["eval", "--workdir", str(workdir), "--split", "test"]) == 0
    summary = json.loads((workdir / "summary.json").read_text())
    assert summary["stop_reason"] == "completed" and summary["steps"] == 20
    scored = json.loads((workdir / "eval_test.json").read_text())
    assert 0.0 <= scored["accuracy"] <= 1.0
