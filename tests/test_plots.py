"""Learning-curve figures carry units and legends: each axis says what it measures and each
curve which split it comes from."""

import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from rnnlab.train import plots  # noqa: E402


def test_every_figure_has_a_legend_per_curve_and_units(tmp_path, monkeypatch):
    records = [
        {"step": s, "split": "train", "time": 0, "loss": 3.0 / s, "lr": 0.01, "grad_norm": 1.0}
        for s in (1, 2, 3)
    ] + [
        {
            "step": 3,
            "split": "validation",
            "time": 0,
            "loss": 1.2,
            "bpc": 1.7,
            "perplexity": 3.3,
            "accuracy": 0.5,
        }
    ]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    figures = []
    close = plt.close
    monkeypatch.setattr(plt, "close", lambda fig=None: (figures.append(fig), close(fig)))
    written = plots.plot_workdir(str(tmp_path))
    assert {p.rsplit("/", 1)[-1] for p in written} == {
        "loss.png",
        "bpc.png",
        "accuracy.png",
        "perplexity.png",
        "grad_norm.png",
        "lr.png",
    }
    assert len(figures) == len(written)
    labels = {}
    for fig in figures:
        ax = fig.axes[0]
        legend = ax.get_legend()
        assert legend is not None, ax.get_title()
        assert len(legend.get_texts()) == len(ax.get_lines())
        assert ax.get_xlabel().startswith("training step")
        labels[ax.get_title()] = (ax.get_ylabel(), [t.get_text() for t in legend.get_texts()])
    assert labels["loss"] == ("loss (nats per token)", ["train loss", "validation loss"])
    assert labels["bpc"][0] == "bpc (bits per character)"
    assert labels["accuracy"][0] == "accuracy (fraction correct)"
    assert labels["learning rate"] == ("lr (learning rate per update)", ["lr (train)"])
