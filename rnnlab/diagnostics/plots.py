"""Figures of :mod:`rnnlab.diagnostics`: gradient flow through time (one line per cell or
training step), its heatmap over training, and recurrent-Jacobian spectra, as PNG files.

matplotlib's Agg canvas is imported only when a figure is drawn, so importing the
diagnostics costs nothing where no plot is made (a TPU worker, a test).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np


def _figure(width: float = 6.4, height: float = 4.0):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot(1, 1, 1)


def _save_log_lines(fig, ax, path: str, ylabel: str, title: str) -> str:
    ax.set_yscale("log")
    ax.set_xlabel("time step t")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path)
    return path


def plot_gradient_flow(
    curves: Mapping[str, np.ndarray], path: str, *, title: str = "Gradient flow through time"
) -> str:
    """Line plot of ``||dL/dh_t||`` against ``t``, one line per label, log scale; PNG."""
    fig, ax = _figure()
    for label, values in curves.items():
        values = np.asarray(values, np.float64)
        ax.plot(np.arange(1, len(values) + 1), np.maximum(values, 1e-30), label=label)
    return _save_log_lines(fig, ax, path, "||dL/dh_t||", title)


def plot_gradient_heatmap(
    steps: Sequence[int], norms: np.ndarray, path: str, *, title: str = "||dL/dh_t|| in training"
) -> str:
    """Heatmap of ``log10 ||dL/dh_t||``: training step (rows) against time step; PNG."""
    norms = np.asarray(norms, np.float64)
    if norms.ndim != 2 or norms.shape[0] != len(steps):
        raise ValueError(
            f"norms must be [len(steps)={len(steps)}, T], got shape {tuple(norms.shape)}"
        )
    fig, ax = _figure()
    image = ax.imshow(
        np.log10(np.maximum(norms, 1e-30)),
        aspect="auto",
        origin="lower",
        interpolation="nearest",
        extent=(0.5, norms.shape[1] + 0.5, -0.5, len(steps) - 0.5),
    )
    ticks = np.linspace(0, len(steps) - 1, min(len(steps), 8)).round().astype(int)
    ax.set_yticks(ticks, [str(steps[i]) for i in ticks])
    ax.set_xlabel("time step t")
    ax.set_ylabel("training step")
    ax.set_title(title)
    fig.colorbar(image, ax=ax, label="log10 ||dL/dh_t||")
    fig.tight_layout()
    fig.savefig(path)
    return path


def plot_jacobian_spectra(
    spectra: Mapping[str, np.ndarray], path: str, *, title: str = "Recurrent Jacobian spectrum"
) -> str:
    """Largest and smallest singular value of ``dh_t/dh_{t-1}`` against ``t`` per label.

    ``spectra[label]`` is ``[T, k]`` (one sequence, or a batch mean).
    """
    fig, ax = _figure()
    for label, sv in spectra.items():
        sv = np.asarray(sv, np.float64)
        t = np.arange(1, sv.shape[0] + 1)
        (line,) = ax.plot(t, sv[:, 0], label=f"{label} (max)")
        ax.plot(t, np.maximum(sv[:, -1], 1e-30), linestyle=":", color=line.get_color())
    ylabel = "singular value (solid: largest, dotted: smallest)"
    return _save_log_lines(fig, ax, path, ylabel, title)
