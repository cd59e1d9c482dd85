"""A small series file and a forecaster trained on it through ``rnnlab train``, for the
forecasting predict and export tests."""

from __future__ import annotations

import numpy as np

from rnnlab import cli

LOOKBACK, HORIZON, PERIOD, ROWS = 16, 4, 12, 200


def write_series(path, rows: int = ROWS, seed: int = 0) -> np.ndarray:
    """A seasonal series with a trend and noise, as a CSV with a date column and a header;
    returns its values ``[rows]``."""
    rng = np.random.default_rng(seed)
    t = np.arange(rows)
    values = 10 + 0.02 * t + 2 * np.sin(2 * np.pi * t / PERIOD) + rng.normal(0, 0.3, rows)
    lines = ["date,sales"] + [f"2020-{i:04d},{float(v)!r}" for i, v in enumerate(values)]
    path.write_text("\n".join(lines) + "\n")
    return values


def train_forecaster(series, workdir, head: str = "quantile", steps: int = 12) -> None:
    """``experiments/forecast.py:csv_series`` with ``head``, shrunk to ``steps`` steps."""
    variant = "csv_series,small" if head == "quantile" else f"csv_series,{head},small"
    args = ["train", "--config", f"experiments/forecast.py:{variant}", "--workdir", str(workdir),
            f"--config.data.path={series}", f"--config.data.seq_len={LOOKBACK}",
            f"--config.data.horizon={HORIZON}", f"--config.data.seasonal_period={PERIOD}",
            "--config.model.ar_order=4", f"--config.train.steps={steps}",
            f"--config.train.eval_every={steps}", f"--config.train.checkpoint_every={steps}",
            f"--config.train.log_every={steps}", "--config.optim.warmup_steps=2",
            "--config.baselines.models="]  # fmt: skip
    assert cli.main(args) == 0


def cuts(rows: int = ROWS) -> list[int]:
    """The train / validation / test cut rows of a 0.7 / 0.1 / 0.2 split in time order."""
    return [0, int(round(rows * 0.7)), int(round(rows * 0.8)), rows]
