"""End-of-run reports of the task models: what a single number per split does not show.

Each ``*_report(run, state, workdir) -> dict`` runs after training, on the main process,
with the best checkpoint's state; the training engine stores the dict in ``summary.json``
under ``"report"``. They evaluate the held-out split named by ``config.report.split``
(default ``"test"``) and add:

- forecasting: the seasonal-naive, ARIMA and ETS baselines on the same windows
  (:mod:`rnnlab.models.baselines`, settings from ``config.baselines``) and
  ``plots/forecasts.png`` (forecasts against the truth on a few windows);
- video: ``plots/frames.png``, observed frames, the true continuation and the prediction;
- CTC: the label error rate of prefix beam search next to best-path decoding;
- translation: a few decoded examples as text;
- classification: per-class precision, recall and F1 and the confusion matrix.

Every process runs a report (evaluation gathers across processes); only the main one
writes figures. Harness code (data, matplotlib, statsmodels); the core never imports it.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from rnnlab.models import baselines
from rnnlab.models.ctc import prefix_beam_search, strip
from rnnlab.models.metrics import error_rate, per_class_metrics


def _option(config: Any, group: str, key: str, default: Any) -> Any:
    node = config.get(group) if hasattr(config, "get") else None
    if node is None:
        return default
    value = node.get(key, default)
    return default if value is None else value


def report_split(run) -> str:
    return str(_option(run.config, "report", "split", "test"))


def predictions(run, state, split: str, keys: tuple[str, ...]) -> Iterator[tuple[dict, dict]]:
    """``(host batch, host outputs)`` for every batch of ``split``, padding rows removed;
    outputs hold ``"outputs"`` and the named ``aux`` entries."""
    from rnnlab import parallel
    from rnnlab.train import inputs

    graphdef = run.graphdef

    @jax.jit
    def forward(params, rest, batch):
        outputs, aux = nnx.merge(graphdef, params, rest)(batch, train=False)
        return {"outputs": outputs, **{k: aux[k] for k in keys}}

    it = inputs.iterator(
        run.source,
        run.config,
        run.mesh,
        split=split,
        global_batch_size=int(run.config.eval.batch_size),
        repeat=False,
    )
    for batch in it:
        out = parallel.to_host(forward(state.params, state.rest, inputs.to_global(batch, run.mesh)))
        keep = np.asarray(batch["weights"]).reshape(len(batch["weights"]), -1)[:, 0] > 0
        yield (
            {k: np.asarray(v)[keep] for k, v in batch.items()},
            {k: np.asarray(v)[keep] for k, v in out.items()},
        )


def _save(fig, workdir: str, name: str) -> str | None:
    """Writes ``fig`` to ``<workdir>/plots/<name>`` from the main process (gs:// allowed)."""
    import matplotlib.pyplot as plt

    from rnnlab.train import files

    path = None
    if jax.process_index() == 0:
        png = io.BytesIO()
        fig.savefig(png, format="png", dpi=100)
        files.makedirs(files.join(workdir, "plots"))
        path = files.join(workdir, "plots", name)
        files.write_bytes(path, png.getvalue())
    plt.close(fig)
    return path


# -- forecasting ----------------------------------------------------------------------------
def forecast_report(run, state, workdir: str) -> dict[str, Any]:
    """Model and baseline errors on the report split, and ``plots/forecasts.png``."""
    split = report_split(run)
    info = run.info
    mean, std = float(info["mean"][0]), float(info["std"][0])
    scale = float(info["mase_scale"][0])
    preds, truth = [], []
    for batch, out in predictions(run, state, split, ()):
        preds.append(out["outputs"][..., 0])
        truth.append(np.asarray(batch["targets"])[..., 0])
    model = mean + std * np.concatenate(preds).astype(np.float64)
    y = mean + std * np.concatenate(truth).astype(np.float64)
    cfg = {k: v for k, v in _as_dict(run.config.get("baselines")).items() if k != "split"}
    base = baselines.forecast_baselines(run.config.data, info, split=split, **cfg)
    forecasts = base.pop("forecasts")
    if not np.allclose(forecasts["truth"], y, atol=1e-3 * std):
        raise RuntimeError(f"the {split} windows of the model and of the baselines differ")
    report = {"split": split, "model": baselines.errors(y, model, scale), **base}
    report["figure"] = _plot_forecasts(workdir, forecasts, model, info)
    return report


def _as_dict(cfg: Any) -> dict[str, Any]:
    if cfg is None:
        return {}
    return cfg.to_dict() if hasattr(cfg, "to_dict") else dict(cfg)


def _plot_forecasts(workdir: str, forecasts: dict, model: np.ndarray, info) -> str | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(model)
    picks = sorted({0, n // 2, n - 1})
    fig, axes = plt.subplots(len(picks), 1, figsize=(8, 2.6 * len(picks)), squeeze=False)
    steps = np.arange(model.shape[1])
    for ax, i in zip(axes[:, 0], picks, strict=True):
        ax.plot(steps, forecasts["truth"][i], "k-", lw=2, label="truth")
        ax.plot(steps, model[i], label="recurrent forecaster")
        for name in ("arima", "ets", "seasonal_naive"):
            ax.plot(steps, forecasts[name][i], "--", lw=1, label=name.replace("_", "-"))
        ax.set_title(f"{info.get('name', 'series')}: test window {i}")
        ax.set_xlabel("steps ahead")
    axes[0, 0].legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, workdir, "forecasts.png")


# -- video ----------------------------------------------------------------------------------
def video_report(run, state, workdir: str) -> dict[str, Any]:
    """Metrics on the report split and ``plots/frames.png``: for two sequences, the observed
    frames, the true future and the predicted future."""
    split = report_split(run)
    batch, out = next(predictions(run, state, split, ()))
    path = _plot_frames(workdir, batch["inputs"][:2], batch["targets"][:2], out["outputs"][:2])
    return {"split": split, split: run.evaluate(state, split), "figure": path}


def _plot_frames(workdir: str, seen, truth, pred) -> str | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [("observed", seen), ("true future", truth), ("predicted", pred)]
    cols = max(seen.shape[1], truth.shape[1])
    fig, axes = plt.subplots(
        3 * len(seen), cols, figsize=(cols * 0.9, 3 * len(seen) * 0.95), squeeze=False
    )
    for b in range(len(seen)):
        for r, (name, frames) in enumerate(rows):
            for t in range(cols):
                ax = axes[3 * b + r, t]
                ax.axis("off")
                if t < frames.shape[1]:
                    ax.imshow(frames[b, t, ..., 0], cmap="gray", vmin=0, vmax=1)
            axes[3 * b + r, 0].set_title(name, fontsize=7, loc="left")
    fig.tight_layout()
    return _save(fig, workdir, "frames.png")


# -- speech recognition ---------------------------------------------------------------------
def ctc_report(run, state, workdir: str, *, beam_width: int = 8) -> dict[str, Any]:
    """Best-path and prefix-beam-search label error rates on the report split."""
    del workdir
    split = report_split(run)
    limit = int(_option(run.config, "report", "max_examples", 1000))
    greedy, beam, refs = [], [], []
    blank = int(run.info.get("blank_id", 0))
    for batch, out in predictions(run, state, split, ("logit_lengths",)):
        logits, lengths = out["outputs"], out["logit_lengths"]
        log_probs = np.asarray(jax.nn.log_softmax(logits, axis=-1))
        for lp, n in zip(log_probs, lengths, strict=True):
            frames = lp[: int(n)]
            greedy.append(_best_path(frames, blank))
            beam.append(prefix_beam_search(frames, beam_width=beam_width, blank_id=blank)[0][0])
        refs.extend(strip(batch["targets"], batch["target_lengths"]))
        if len(refs) >= limit:
            break
    return {
        "split": split,
        "examples": len(refs),
        "greedy_error_rate": error_rate(greedy, refs),
        "beam_error_rate": error_rate(beam, refs),
        "beam_width": beam_width,
    }


def _best_path(log_probs: np.ndarray, blank: int) -> tuple[int, ...]:
    best = np.argmax(log_probs, axis=-1)
    keep = (best != blank) & np.concatenate([[True], best[1:] != best[:-1]])
    return tuple(int(s) for s in best[keep])


# -- translation ----------------------------------------------------------------------------
def seq2seq_report(run, state, workdir: str, *, num_examples: int = 5) -> dict[str, Any]:
    """Metrics on the report split and a few decoded examples as text."""
    del workdir
    split = report_split(run)
    batch, out = next(predictions(run, state, split, ("predictions", "prediction_lengths")))
    src_vocab = run.info.get("source_vocab") or []
    tgt_vocab = run.info.get("target_vocab") or []

    def text(ids, vocab):
        return " ".join(vocab[i] if i < len(vocab) else str(i) for i in ids)

    examples = []
    for i in range(min(num_examples, len(batch["inputs"]))):
        src = batch["inputs"][i][: int(batch["input_lengths"][i])]
        ref = batch["targets"][i][: int(batch["target_lengths"][i])]
        hyp = out["predictions"][i][: int(out["prediction_lengths"][i])]
        examples.append(
            {
                "source": text(src, src_vocab),
                "reference": text(ref, tgt_vocab),
                "prediction": text(hyp, tgt_vocab),
            }
        )
    return {"split": split, split: run.evaluate(state, split), "examples": examples}


# -- classification -------------------------------------------------------------------------
def classification_report(run, state, workdir: str) -> dict[str, Any]:
    """Accuracy, per-class precision, recall and F1, their macro averages and the confusion
    matrix (rows: true class, columns: predicted) on the report split."""
    del workdir
    split = report_split(run)
    num_classes = int(run.info["num_classes"])
    conf = np.zeros((num_classes, num_classes), np.int64)
    for batch, out in predictions(run, state, split, ()):
        labels = np.asarray(batch["labels"]).reshape(-1)
        pred = np.argmax(out["outputs"], axis=-1).reshape(-1)
        np.add.at(conf, (labels, pred), 1)
    per = per_class_metrics(jnp.asarray(conf, jnp.float32))
    names = run.info.get("class_names") or [str(c) for c in range(num_classes)]
    return {
        "split": split,
        "examples": int(conf.sum()),
        "accuracy": float(np.trace(conf) / max(conf.sum(), 1)),
        "classes": list(names),
        **{k: np.asarray(v).tolist() for k, v in per.items()},
        "confusion": conf.tolist(),
    }


REPORTS = {
    "classification": classification_report,
    "forecast": forecast_report,
    "video": video_report,
    "ctc": ctc_report,
    "seq2seq": seq2seq_report,
}
