"""Instruments for vanishing and exploding gradients inside recurrences.

* :mod:`rnnlab.diagnostics.probes` (JAX): :func:`hidden_state_gradients`, the exact
  ``||dL/dh_t||`` at every step of every recurrent layer of any model, and
  :func:`jacobian_spectra` / :func:`cell_jacobian_spectrum`, the singular values of the
  recurrent Jacobian ``dh_t/dh_{t-1}`` along a sequence.
* :mod:`rnnlab.diagnostics.plots` (matplotlib, imported only when a figure is drawn):
  :func:`plot_gradient_flow`, :func:`plot_gradient_heatmap`, :func:`plot_jacobian_spectra`.

``rnnlab diagnose`` (the command line) reports and plots both for a trained workdir.
"""

from rnnlab.diagnostics.plots import (
    plot_gradient_flow,
    plot_gradient_heatmap,
    plot_jacobian_spectra,
)
from rnnlab.diagnostics.probes import (
    GradientFlow,
    cell_jacobian_spectrum,
    hidden_state_gradients,
    jacobian_spectra,
)

__all__ = [
    "GradientFlow",
    "cell_jacobian_spectrum",
    "hidden_state_gradients",
    "jacobian_spectra",
    "plot_gradient_flow",
    "plot_gradient_heatmap",
    "plot_jacobian_spectra",
]
