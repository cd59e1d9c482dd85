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
    """Line plot of ``||dL/dh_t||`` against ``t``, one line per label, log scale; PNG.

    A value is a ``[T]`` array of norms, or what
    :func:`~rnnlab.diagnostics.hidden_state_gradients` returns (its ``norms``: one line per
    layer, labelled ``label layer``, or ``label`` for a one-layer model)."""
    fig, ax = _figure()
    lines: dict[str, np.ndarray] = {}
    for label, values in curves.items():
        norms = getattr(values, "norms", None)
        if isinstance(norms, Mapping):
            for layer, v in norms.items():
                lines[label if len(norms) == 1 else f"{label} {layer}"] = v
        else:
            lines[label] = values
    for label, values in lines.items():
        values = np.asarray(values, np.float64)
        if values.ndim != 1:
            raise ValueError(f"curves[{label!r}] must be [T] norms, got shape {values.shape}")
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


def _spectrum_array(label: str, sv) -> np.ndarray:
    """``sv`` as a float64 ``[N, T, k]`` array (``N = 1`` for a single ``[T, k]`` spectrum)."""
    arr = np.asarray(sv, np.float64)
    if arr.ndim < 2 or 0 in arr.shape:
        raise ValueError(
            f"spectra[{label!r}] must be [T, k] or [*batch, T, k] singular values (what "
            f"cell_jacobian_spectrum and jacobian_spectra return), got shape {arr.shape}"
        )
    if np.any(arr < 0):
        raise ValueError(f"spectra[{label!r}] holds negative values: not singular values")
    return arr.reshape((-1,) + arr.shape[-2:])


def plot_jacobian_spectra(
    spectra: Mapping[str, np.ndarray],
    path: str,
    *,
    title: str = "Recurrent Jacobian spectrum",
    band: tuple[float, float] = (10.0, 90.0),
) -> str:
    """Largest and smallest singular value of ``dh_t/dh_{t-1}`` against ``t`` per label; PNG.

    ``spectra[label]`` is what :func:`~rnnlab.diagnostics.cell_jacobian_spectrum` or
    :func:`~rnnlab.diagnostics.jacobian_spectra` return, ``[*batch, T, k]`` (singular values
    in descending order), or one ``[T, k]`` spectrum. With a batch the lines are the median
    over sequences and the shaded band spans the ``band`` percentiles (10th to 90th by
    default) of the largest singular value. Shapes are checked first: every entry needs at
    least two axes, and all entries the same ``T``.

    Example::

        >>> import jax.numpy as jnp
        >>> from flax import nnx
        >>> from rnnlab import diagnostics
        >>> from rnnlab.cells import LSTMCell
        >>> cell = LSTMCell(3, 8, rngs=nnx.Rngs(0))
        >>> sv = diagnostics.cell_jacobian_spectrum(cell, jnp.ones((4, 10, 3)))  # [4, 10, 16]
        >>> diagnostics.plot_jacobian_spectra({"lstm": sv}, "/tmp/spectrum.png")
        '/tmp/spectrum.png'
    """
    if not spectra:
        raise ValueError("spectra is empty: give {label: [*batch, T, k] singular values}")
    lo, hi = band
    if not 0.0 <= lo < hi <= 100.0:
        raise ValueError(f"band must be two percentiles 0 <= low < high <= 100, got {band!r}")
    arrays = {label: _spectrum_array(label, sv) for label, sv in spectra.items()}
    lengths = {label: a.shape[1] for label, a in arrays.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"spectra must share the number of time steps T, got {lengths}")
    fig, ax = _figure()
    for label, sv in arrays.items():
        t = np.arange(1, sv.shape[1] + 1)
        largest, smallest = sv[:, :, 0], np.maximum(sv[:, :, -1], 1e-30)
        many = sv.shape[0] > 1
        of = f", median of {sv.shape[0]} sequences" if many else ""
        (line,) = ax.plot(t, np.median(largest, axis=0), label=f"{label}: largest{of}")
        ax.plot(
            t,
            np.median(smallest, axis=0),
            linestyle=":",
            color=line.get_color(),
            label=f"{label}: smallest{of}",
        )
        if many:
            low, high = np.percentile(largest, [lo, hi], axis=0)
            ax.fill_between(t, np.maximum(low, 1e-30), high, color=line.get_color(), alpha=0.2)
    ylabel = "singular value of dh_t/dh_{t-1}"
    return _save_log_lines(fig, ax, path, ylabel, title)
