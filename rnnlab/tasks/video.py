"""Next-frame prediction (task ``"video"``): per-pixel loss, MSE per frame, SSIM, the
copy-last-frame baseline, and a report figure of observed, true and predicted frames."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax.numpy as jnp
import optax

from rnnlab.tasks.common import Array, Sums, row_weights, weighted
from rnnlab.tasks.evaluation import predictions, report_split, save_figure
from rnnlab.tasks.registry import Task, register
from rnnlab.tasks.scores import ssim


def video_metrics(outputs: Array, aux: Mapping[str, Any], batch: Mapping[str, Array]) -> Sums:
    """The training loss (``loss``: per-pixel binary cross-entropy of ``aux["bce_logits"]``
    when the model provides them, else the MSE), the mean squared error per pixel (``mse``),
    at the first and last predicted frame (``mse_t<k>``), SSIM averaged over predicted
    frames (``ssim``, Wang et al. 2004), and the MSE of repeating the last observed frame
    (``copy_last_mse``), the baseline."""
    y = jnp.asarray(batch["targets"], jnp.float32)
    last = jnp.asarray(batch["inputs"], jnp.float32)[:, -1:]
    rows = row_weights(batch, y.shape[0])
    per_frame = jnp.mean(jnp.square(outputs.astype(jnp.float32) - y), axis=(2, 3, 4))  # [B, T]
    window = min(7, y.shape[2], y.shape[3])
    mse = jnp.mean(per_frame, axis=1)
    if "bce_logits" in aux:
        bce = optax.sigmoid_binary_cross_entropy(aux["bce_logits"].astype(jnp.float32), y)
        loss = jnp.mean(bce.reshape(bce.shape[0], -1), axis=1)
    else:
        loss = mse
    sums = {
        "loss": weighted(loss, rows),
        "mse": weighted(mse, rows),
        "ssim": weighted(jnp.mean(ssim(outputs, y, window_size=window), axis=1), rows),
    }
    copy = jnp.mean(jnp.square(last - y), axis=(1, 2, 3, 4))
    sums["copy_last_mse"] = weighted(copy, rows)
    for k in (0, per_frame.shape[1] - 1):
        sums[f"mse_t{k + 1}"] = weighted(per_frame[:, k], rows)
    return sums


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
            # Frame times: the observed ones 1..n, the future (true and predicted) n+1...
            first = 1 if r == 0 else seen.shape[1] + 1
            for t in range(cols):
                ax = axes[3 * b + r, t]
                ax.axis("off")
                if t < frames.shape[1]:
                    ax.imshow(frames[b, t, ..., 0], cmap="gray", vmin=0, vmax=1)
                    ax.set_title(f"t={first + t}", fontsize=6, loc="right")
            axes[3 * b + r, 0].set_title(name, fontsize=7, loc="left")
    fig.tight_layout()
    return save_figure(fig, workdir, "frames.png")


register(Task("video", video_metrics, report=video_report))
