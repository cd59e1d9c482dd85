"""The figures of docs/training.md: the default plots of four small runs.

Trains ``charlm:small`` (a language model), ``classify:small`` (a classifier),
``forecast:small`` (a forecaster) and ``translation:small`` (a translator) into
``WORKDIRS`` (default a temporary folder; give run names after it to redo only those),
then writes one small PNG per run into
``docs/figures/training/``: the run's loss curves beside its task figure (the validation
metric, or the forecasts). Run from the repository root::

    python -m tools.training_figures [WORKDIRS [lm|classifier|forecaster|translation ...]]

A few minutes on 2 CPU cores.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

# name: (config, overrides, the task's figure: the first of these the run wrote)
RUNS = {
    "lm": ("charlm:small", [], ("bpc.png",)),
    # Evaluated more often than the small variants do, so that the validation metrics are
    # curves, not single points.
    "classifier": ("classify:small", ["--config.train.eval_every=20"], ("accuracy.png",)),
    "forecaster": ("forecast:small", ["--config.train.eval_every=25"], ("forecasts.png",)),
    "translation": ("translation:small", ["--config.train.eval_every=50"], ("bleu.png",)),
}
OUT = Path(__file__).resolve().parents[1] / "docs" / "figures" / "training"


def side_by_side(paths: list[Path], out: Path, title: str) -> None:
    """The PNGs at ``paths`` in one row, downscaled, as ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    images = [plt.imread(p) for p in paths]
    # Each panel as wide as its image's aspect at a common height: nothing is squeezed.
    aspects = [im.shape[1] / im.shape[0] for im in images]
    height = 4.2
    fig, axes = plt.subplots(
        1,
        len(images),
        figsize=(height * sum(aspects), height + 0.3),
        dpi=80,
        gridspec_kw={"width_ratios": aspects},
    )
    for ax, image in zip(list(getattr(axes, "flat", [axes])), images, strict=True):
        ax.imshow(image)
        ax.axis("off")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=80)
    plt.close(fig)


def main(argv: list[str]) -> int:
    from rnnlab import cli

    root = Path(argv[0]) if argv else Path(tempfile.mkdtemp(prefix="rnnlab-figures-"))
    OUT.mkdir(parents=True, exist_ok=True)
    for name in argv[1:] or list(RUNS):
        config, overrides, task_figures = RUNS[name]
        workdir = root / name
        if cli.main(["train", "--config", config, "--workdir", str(workdir), *overrides]) != 0:
            return 1
        plots = workdir / "plots"
        task = next((f for f in task_figures if (plots / f).is_file()), task_figures[-1])
        side_by_side(
            [plots / "loss.png", plots / task],
            OUT / f"{name}.png",
            f"rnnlab train --config {config}: plots/loss.png and plots/{task}",
        )
        print(OUT / f"{name}.png")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
