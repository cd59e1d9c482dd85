"""Learning-curve figures carry units and legends, one figure per question: each axis says
what it measures, each curve which split it comes from; no single-point curves, no log axis
over less than a decade, the schedule's learning rate per step."""

import json
import math

import pytest

from rnnlab.train import plots


def _write(tmp_path, records, config=None):
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    if config is not None:
        (tmp_path / "config.json").write_text(json.dumps(config))


@pytest.fixture
def figures(monkeypatch):
    kept = []
    save = plots._save
    monkeypatch.setattr(plots, "_save", lambda fig, path: (kept.append(fig), save(fig, path)))
    return kept


def _by_title(figs):
    return {f.axes[0].get_title(): f.axes[0] for f in figs}


def _records():
    train = [
        {
            "step": s,
            "split": "train",
            "time": 0,
            "loss": 3.0 / s,
            "lr": 0.01,
            "grad_norm": 20.0 / s,
            "clipped_grad_norm": min(20.0 / s, 1.0),
            "tokens_per_second": 1000.0 + s,
        }
        for s in (10, 20, 30)
    ]
    val = [
        {"step": s, "split": "validation", "time": 0, "loss": 1.2, "bpc": 1.7,
         "bits_per_token": 1.7, "perplexity": 3.3, "accuracy": 0.5, "error": 0.5,
         "bleu_correct_1": 4.0, "bleu_total_1": 9.0}
        for s in (10, 30)
    ]  # fmt: skip
    return train + val


def test_one_figure_per_question_with_units_and_split_legends(tmp_path, figures):
    _write(tmp_path, _records())
    written = plots.plot_workdir(str(tmp_path))
    names = {p.rsplit("/", 1)[-1] for p in written}
    # One figure per question: the task's metric (bpc) only; no counts (bleu_*), no
    # restated metrics (error, bits_per_token), no second quality metric.
    assert names == {"loss.png", "bpc.png", "grad_norm.png", "lr.png", "throughput.png"}
    assert len(figures) == len(written)
    axes = _by_title(figures)
    for ax in axes.values():
        legend = ax.get_legend()
        assert legend is not None and len(legend.get_texts()) == len(ax.get_lines())
        assert ax.get_xlabel().startswith("training step")
    legend = [t.get_text() for t in axes["loss"].get_legend().get_texts()]
    assert axes["loss"].get_ylabel() == "loss (nats per token)" and legend == [
        "train",
        "validation",
    ]
    assert axes["bpc"].get_ylabel() == "bpc (bits per character)"
    assert axes["throughput"].get_ylabel() == "tokens_per_second (tokens per second)"
    grad = axes["gradient norm (train)"]
    assert [t.get_text() for t in grad.get_legend().get_texts()] == [
        "before clipping",
        "after clipping",
    ]
    # The clipped curve is drawn dashed over the unclipped one.
    lines = grad.get_lines()
    assert lines[1].get_linestyle() == "--" and lines[1].get_zorder() > lines[0].get_zorder()


def test_single_points_and_narrow_ranges(tmp_path, figures):
    records = [
        {"step": s, "split": "train", "time": 0, "loss": 4.0 - 0.1 * s, "grad_norm": 0.5}
        for s in (1, 2, 3)
    ] + [{"step": 3, "split": "validation", "time": 0, "loss": 3.7, "accuracy": 0.4}]
    _write(tmp_path, records)
    names = {p.rsplit("/", 1)[-1] for p in plots.plot_workdir(str(tmp_path))}
    assert "accuracy.png" not in names  # measured once: no figure
    loss = _by_title(figures)["loss"]
    assert [t.get_text() for t in loss.get_legend().get_texts()] == ["train"]
    assert loss.get_yscale() == "linear"  # 3.7 to 3.9: less than a decade
    assert _by_title(figures)["gradient norm (train)"].get_yscale() == "linear"


def test_lr_plot_is_the_schedule_at_every_step(tmp_path, figures):
    records = [
        {"step": s, "split": "train", "time": 0, "loss": 1.0, "lr": 0.5} for s in (30, 60, 90)
    ]
    optim = {
        "lr": 0.01, "schedule": "cosine", "warmup_steps": 10, "total_steps": 90,
        "final_lr_fraction": 0.0, "decay_every": 0, "decay_factor": 0.1, "accumulate_steps": 1,
    }  # fmt: skip
    _write(tmp_path, records, {"optim": optim})
    plots.plot_workdir(str(tmp_path))
    (line,) = _by_title(figures)["learning rate"].get_lines()
    xs, ys = line.get_xdata(), line.get_ydata()
    assert list(xs) == list(range(1, 91))
    # Closed form: linear warm-up 0.01 * t / 10 for t < 10, then a cosine over 80 steps.
    for step, lr in zip(xs, ys, strict=True):
        t = step - 1
        want = 0.01 * t / 10 if t < 10 else 0.005 * (1 + math.cos(math.pi * (t - 10) / 80))
        assert lr == pytest.approx(want, rel=1e-5, abs=1e-9)
    assert max(range(90), key=lambda i: ys[i]) + 1 == 11  # the peak at the end of warm-up


@pytest.mark.parametrize(
    "logged, figure",
    [
        ({"bpc", "bits_per_token", "perplexity", "accuracy"}, "bpc"),  # character LM
        ({"perplexity", "bits_per_token", "accuracy"}, "perplexity"),  # word LM
        ({"bleu", "perplexity", "token_accuracy", "bleu_total_1"}, "bleu"),  # translation
        ({"accuracy", "error"}, "accuracy"),  # classifier
        ({"mase", "mae", "naive_mase", "mse"}, "mase"),  # forecaster
    ],
)
def test_the_task_metric_is_the_one_a_results_table_reports(logged, figure):
    assert plots.task_metric(logged | {"loss"}) == [figure]
