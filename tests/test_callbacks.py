"""Callbacks that act: one lifecycle, a clean stop at a metric threshold that resumes bit for
bit, a checkpoint on request, and ``hooks``/``loggers`` as callbacks."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest

from rnnlab.data.memory import ArraySource
from rnnlab.train import Callback, StopAtThreshold, config, export, train


def _config():
    c = config.load("experiments/own_data.py:classification,small")
    return config.override(c, ["data.name=my_arrays", "train.log_every=5", "train.eval_every=10"])


def _source():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(96, 8, 2)).astype(np.float32)
    return ArraySource({"inputs": x, "labels": (x[:, :, 0].mean(1) > 0).astype(int)},
                       task="classification")  # fmt: skip


def _params(workdir):
    model, info = export.load(str(workdir), "latest")
    from flax import nnx

    return info.step, jax.tree.leaves(nnx.state(model))


def _losses(workdir):
    lines = (workdir / "metrics.jsonl").read_text().splitlines()
    return [(r["step"], r["split"], r["loss"]) for r in map(json.loads, lines) if "loss" in r]


class Lifecycle(Callback):
    def __init__(self):
        self.events = []

    def on_run_start(self, run):
        self.events.append(("start", run.start_step, run.total_steps))

    def on_log(self, step, metrics):
        self.events.append(("log", step))
        if step == 15:
            self.control.request_save()

    def on_eval(self, step, split, metrics):
        self.events.append(("eval", step, split))

    def on_checkpoint(self, step):
        self.events.append(("checkpoint", step))

    def on_run_end(self, summary):
        self.events.append(("end", summary["stop_reason"]))


@pytest.fixture(scope="module")
def whole(tmp_path_factory):
    """One uninterrupted run of the small variant (30 steps) with a :class:`Lifecycle`
    callback, a hook and a logger: the reference of the resume test and the record of the
    lifecycle test, which only read it. ``(workdir, summary, lifecycle, steps, records)``."""
    life, steps, records = Lifecycle(), [], []
    workdir = tmp_path_factory.mktemp("whole") / "run"
    summary = train(
        _config(),
        str(workdir),
        source=_source(),
        callbacks=[life],
        hooks=[lambda step, state: steps.append(step)],
        loggers=[lambda step, split, m: records.append((step, split))],
    )
    return workdir, summary, life, steps, records


def test_a_threshold_stop_leaves_a_complete_workdir_that_resumes_bit_identically(whole, tmp_path):
    """The uninterrupted reference also saved on request at step 15 (Lifecycle): a save
    changes no parameter and no logged loss."""
    stopped = tmp_path / "stopped"
    # The first training window's loss is far below 100: the run stops at step 5.
    stop = StopAtThreshold("loss", 100.0, split="train", mode="min")
    summary = train(_config(), str(stopped), source=_source(), callbacks=[stop])
    assert summary["stop_reason"] == "callback" and summary["steps"] == 5
    assert "train loss" in summary["callback_reason"]
    on_disk = json.loads((stopped / "summary.json").read_text())
    assert on_disk["stop_reason"] == "callback" and on_disk["final"]["train"]["loss"] > 0
    assert _params(stopped)[0] == 5  # the stop wrote a checkpoint of that step
    resumed = train(_config(), str(stopped), source=_source())
    assert resumed["stop_reason"] == "completed" and resumed["steps"] == 30
    step_a, leaves_a = _params(whole[0])
    step_b, leaves_b = _params(stopped)
    assert step_a == step_b == 30
    for a, b in zip(leaves_a, leaves_b, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert _losses(whole[0]) == _losses(stopped)


def test_lifecycle_order_save_on_request_and_hooks_and_loggers(whole):
    _, summary, life, steps, records = whole
    assert summary["stop_reason"] == "completed"
    assert steps == list(range(1, 31))
    want = [(s, "train") for s in range(5, 31, 5)]
    want = [r for s, split in want for r in [(s, split)] + ([(s, "validation")] * (s % 10 == 0))]
    assert records == want  # the loggers see every metrics.jsonl record, in order
    ev = life.events
    assert ev[0] == ("start", 0, 30) and ev[-1] == ("end", "completed")
    # Checkpoints: the requested one at 15, then evaluation steps 10, 20, 30 (checkpoint_every
    # is 30 in the small variant, evaluations save too).
    assert [e[1] for e in ev if e[0] == "checkpoint"] == [10, 15, 20, 30]
    assert ev.index(("log", 15)) < ev.index(("checkpoint", 15))
    assert [e[1] for e in ev if e[0] == "eval"] == [10, 20, 30]


def test_rnnlab_train_takes_a_callback_class(tmp_path, monkeypatch, capsys):
    from rnnlab import cli

    (tmp_path / "my_callbacks.py").write_text(
        "from rnnlab.train import Callback\n\n\n"
        "class StopAtTen(Callback):\n"
        "    def on_log(self, step, metrics):\n"
        "        if step >= 10:\n"
        "            self.control.request_stop('enough')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 6, 2)).astype(np.float32)
    np.savez(tmp_path / "d.npz", inputs=x, labels=(x[:, :, 0].mean(1) > 0).astype(int))
    workdir = tmp_path / "run"
    args = ["train", "--config", "experiments/own_data.py:classification,small", "--workdir",
            str(workdir), f"--config.data.path={tmp_path / 'd.npz'}",
            "--callback", "my_callbacks:StopAtTen"]  # fmt: skip
    assert cli.main(args) == 0
    assert capsys.readouterr().out.startswith("callback: 10 steps")
    summary = json.loads((workdir / "summary.json").read_text())
    assert summary["callback_reason"] == "enough"
    assert cli.main(args[:-2] + ["--callback", "my_callbacks:nothing"]) == 2


def test_callback_specs_take_an_instance_and_errors_name_the_callback_option(tmp_path, monkeypatch):
    from rnnlab.cli.plugins import load_callback
    from rnnlab.train.config import ConfigError

    (tmp_path / "my_instances.py").write_text(
        "from rnnlab.train import StopAtThreshold\n\nlow_loss = StopAtThreshold('loss', 1.2)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    assert isinstance(load_callback("my_instances:low_loss"), StopAtThreshold)
    with pytest.raises(ConfigError, match="--callback package.module:Name") as info:
        load_callback("my_instances")
    assert "logger" not in str(info.value)
