"""Recurrent batch-normalised LSTM (Cooijmans, Ballas, Laurent, Gulcehre & Courville 2016).

Batch normalisation of the input-to-hidden and hidden-to-hidden products and of the cell
state, with **separate statistics for every time step**: the distribution of the
recurrent pre-activations changes along the sequence, so one set of statistics for all
steps would normalise the early steps wrongly. Steps at or past ``max_stat_steps - 1``
share the last set (the paper's ``T_max``).

Training normalises with the statistics of the current batch at each step, reduced over
all batch axes. Under ``jax.jit`` with the batch sharded over a data-parallel mesh, that
``mean`` is a global reduction, so the statistics are synchronised across devices without
an explicit collective (XLA inserts the all-reduce). Evaluation (``use_running_average``,
set by ``model.eval()``) uses running averages kept as ``nnx.BatchStat`` per time step.

The running averages are NNX batch statistics that the cell keeps through the per-step
extras of the cell contract (:mod:`rnnlab.cells.base`): in training (``step_extras``) the
sequence runner passes each step's validity mask to :meth:`BNLSTMCell.step_with_extras`,
which returns the statistics it used, and after the sequence hands them all to
:meth:`BNLSTMCell.aggregate_extras`, which moves the averages. The runner knows nothing of
batch normalisation. The mode is NNX's ``use_running_average``, which ``model.train()`` /
``model.eval()`` set (``nnx.with_attributes(model, use_running_average=True)`` gives a view
in evaluation form without changing the model); the training engine switches for training
and evaluation steps, so the updated averages travel in the train state like any other
variable.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx
from jax.nn import initializers

from rnnlab.cells.base import Array, Carry, Params, RecurrentCell, check_positive_int, matmul
from rnnlab.cells.initializers import Initializer, lstm_bias, orthogonal_blocks
from rnnlab.cells.params import gate_params
from rnnlab.cells.registry import register_cell

F32 = jnp.float32

STAT_NAMES = ("mean_x", "var_x", "mean_h", "var_h", "mean_c", "var_c")


def batch_moments(z: Array, weights: Array | None = None) -> tuple[Array, Array]:
    """Mean and biased variance of ``z`` ``[*batch, F]`` over all batch axes.

    ``weights`` ``[*batch]`` (0 or 1) restricts the statistics to the valid examples of a
    padded batch; an all-zero step gives zero statistics instead of NaN.
    """
    axes = tuple(range(z.ndim - 1))
    if weights is None:
        mean = jnp.mean(z, axis=axes)
        return mean, jnp.mean(jnp.square(z - mean), axis=axes)
    w = weights.astype(F32)[..., None]
    n = jnp.maximum(jnp.sum(w), 1.0)
    mean = jnp.sum(w * z, axis=axes) / n
    return mean, jnp.sum(w * jnp.square(z - mean), axis=axes) / n


def batch_norm(z: Array, mean: Array, var: Array, gamma: Array, beta: Array | None, eps: float):
    """``gamma (z - mean) / sqrt(var + eps) + beta``."""
    out = (z - mean) * jax.lax.rsqrt(var + eps) * gamma.astype(F32)
    return out if beta is None else out + beta.astype(F32)


def bn_lstm_step(
    params: Params,
    carry: Carry,
    xp: Array,
    dtype,
    *,
    use_running_average: bool,
    weights: Array | None = None,
    eps: float = 1e-5,
) -> tuple[Carry, Array, tuple[Array, ...]]:
    """One BN-LSTM step from ``xp = x_t W_x``; returns ``(carry, y, statistics used)``.

    .. math::
        [\\tilde f, \\tilde i, \\tilde o, \\tilde g] = \\mathrm{BN}(h_{t-1} W_h; \\gamma_h)
            + \\mathrm{BN}(x_t W_x; \\gamma_x) + b, \\\\
        c_t = \\sigma(\\tilde f) \\odot c_{t-1} + \\sigma(\\tilde i) \\odot \\tanh(\\tilde g),
        \\qquad h_t = \\sigma(\\tilde o) \\odot \\tanh(\\mathrm{BN}(c_t; \\gamma_c, \\beta_c))

    (Cooijmans et al. 2016, eq. 6-8; the shifts of the two gate normalisations are folded
    into ``b``.) The carry is ``(c, h, t)`` with ``t`` the per-example step counter that
    selects the running statistics in evaluation. Statistics are the batch's at this step
    in training, or ``params[<stat>][min(t, max_stat_steps - 1)]`` in evaluation.
    """
    c, h, t = carry
    wh = matmul(h, params["kernel_hh"], dtype)
    if use_running_average:
        slot = jnp.minimum(t, params["mean_x"].shape[0] - 1)
        stats = [params[name][slot] for name in STAT_NAMES[:4]]
    else:
        stats = [*batch_moments(xp, weights), *batch_moments(wh, weights)]
    z = (
        batch_norm(xp, stats[0], stats[1], params["gamma_x"], None, eps)
        + batch_norm(wh, stats[2], stats[3], params["gamma_h"], None, eps)
        + params["bias"].astype(F32)
    )
    i, f, g, o = jnp.split(z, 4, axis=-1)
    c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
    if use_running_average:
        stats += [params[name][slot] for name in STAT_NAMES[4:]]
    else:
        stats += list(batch_moments(c, weights))
    c_hat = batch_norm(c, stats[4], stats[5], params["gamma_c"], params["beta_c"], eps)
    h = jax.nn.sigmoid(o) * jnp.tanh(c_hat)
    return (c, h, t + 1), h.astype(dtype), tuple(stats)


class BNLSTMCell(RecurrentCell):
    """LSTM with recurrent batch normalisation (Cooijmans et al. 2016).

    Gates in ``(i, f, g, o)`` order like :class:`~rnnlab.cells.LSTMCell`. The gains
    ``gamma`` start at 0.1, which the authors found essential: a unit gain saturates the
    ``tanh`` of the normalised cell state and the gradient vanishes. The carry is
    ``(c, h, t)``; ``t`` (int32 per example) counts steps since the start or the last reset.

    Example::

        >>> import jax.numpy as jnp
        >>> from flax import nnx
        >>> from rnnlab.cells import BNLSTMCell
        >>> cell = BNLSTMCell(3, 8, max_stat_steps=50, rngs=nnx.Rngs(0))
        >>> carry, y = cell(cell.initialize_carry((4, 3)), jnp.ones((4, 3)))
        >>> y.shape
        (4, 8)

    Args:
      in_features: input size.
      hidden_features: cell size ``H``.
      max_stat_steps: number of per-step statistics; later steps share the last.
      momentum: running-average momentum ``m``: after a training sequence every statistics
        slot ``s`` it reached moves as :math:`\\bar\\mu_s \\leftarrow m \\bar\\mu_s +
        (1 - m) \\mu_s`, slot ``max_stat_steps - 1`` taking the example-weighted mean of the
        statistics of all steps at or past it.
      gamma_init: initial normalisation gain (0.1 in the paper).
      forget_bias: initial forget-gate bias.
      eps: variance epsilon.
      use_running_average: normalise with the running averages (evaluation); toggled by
        ``model.eval()`` / ``model.train()``.
      kernel_init, recurrent_kernel_init: initialisers.
      dtype, param_dtype: compute and parameter dtypes; carries stay float32.
      rngs: ``nnx.Rngs`` with a ``params`` stream.
    """

    param_names = ("kernel_ih", "kernel_hh", "bias", "gamma_x", "gamma_h", "gamma_c", "beta_c")

    def __init__(
        self,
        in_features: int,
        hidden_features: int,
        *,
        max_stat_steps: int = 100,
        momentum: float = 0.99,
        gamma_init: float = 0.1,
        forget_bias: float = 1.0,
        eps: float = 1e-5,
        use_running_average: bool = False,
        kernel_init: Initializer = initializers.lecun_normal(),
        recurrent_kernel_init: Initializer = orthogonal_blocks(4),
        dtype=None,
        param_dtype=F32,
        rngs: nnx.Rngs,
    ):
        self.set_features(in_features, hidden_features, dtype, param_dtype)
        self.max_stat_steps = check_positive_int("max_stat_steps", max_stat_steps)
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum!r}")
        self.momentum = float(momentum)
        self.eps, self.use_running_average = float(eps), bool(use_running_average)
        h, h4 = hidden_features, 4 * hidden_features
        self.kernel_ih, self.kernel_hh, self.bias = gate_params(
            rngs,
            input_shape=(in_features,),
            recurrent_shape=(h,),
            width=h4,
            kernel_init=kernel_init,
            recurrent_kernel_init=recurrent_kernel_init,
            bias_init=lstm_bias(h, forget_bias),
            param_dtype=param_dtype,
            bias_keys=False,
        )
        self.gamma_x = nnx.Param(jnp.full((h4,), gamma_init, param_dtype))
        self.gamma_h = nnx.Param(jnp.full((h4,), gamma_init, param_dtype))
        self.gamma_c = nnx.Param(jnp.full((h,), gamma_init, param_dtype))
        self.beta_c = nnx.Param(jnp.zeros((h,), param_dtype))
        for name in STAT_NAMES:
            size = h if name.endswith("_c") else h4
            init = jnp.zeros if name.startswith("mean") else jnp.ones
            setattr(self, name, nnx.BatchStat(init((max_stat_steps, size), F32)))

    def cell_params(self) -> Params:
        """Parameters plus the running statistics (read in evaluation only)."""
        params = super().cell_params()
        for name in STAT_NAMES:
            params[name] = getattr(self, name)[...]
        return params

    def carry_sizes(self) -> tuple[int, ...]:
        return (self.hidden_features, self.hidden_features)

    def initialize_carry(
        self, input_shape: tuple[int, ...], rngs: nnx.Rngs | None = None, carry_init=None
    ) -> Carry:
        """``(c, h, t)``: zero float32 states and a zero int32 step counter."""
        c, h = super().initialize_carry(input_shape, rngs, carry_init)
        batch = tuple(input_shape[:-1])
        return c, h, jnp.zeros(batch, jnp.int32)

    def project(self, params: Params, x: Array) -> Array:
        # Only the matmul: its normalisation needs per-step statistics, so it is in the step.
        return matmul(x, params["kernel_ih"], self.compute_dtype)

    @property
    def step_extras(self) -> bool:
        """In training each step returns the batch statistics it used (the module docstring)."""
        return not self.use_running_average

    def step_with_extras(
        self, params: Params, carry: Carry, xp: Array, valid: Array | None
    ) -> tuple[Carry, Array, tuple[Array, ...]]:
        """A training step normalised with the statistics of the ``valid`` examples; returns
        ``(carry, y, statistics)``."""
        return bn_lstm_step(
            params,
            carry,
            xp,
            self.compute_dtype,
            use_running_average=False,
            weights=valid,
            eps=self.eps,
        )

    def aggregate_extras(self, extras: tuple[Array, ...], valid: Array) -> None:
        """The running averages after a training sequence: :meth:`update_statistics` with
        the number of valid examples at each step."""
        counts = jnp.sum(valid.reshape(valid.shape[0], -1).astype(F32), axis=1)
        self.update_statistics(extras, counts)

    def update_statistics(self, stats: tuple[Array, ...], counts: Array) -> None:
        """Moves each reached slot's running average towards this sequence's statistics.

        ``stats`` are the per-step statistics ``[T, F]`` (in :data:`STAT_NAMES` order) and
        ``counts [T]`` the number of valid examples at each step.
        """
        num_slots, num_steps = self.max_stat_steps, counts.shape[0]
        slot = jnp.minimum(jnp.arange(num_steps), num_slots - 1)
        totals = jax.ops.segment_sum(counts, slot, num_slots)
        reached = (totals > 0)[:, None]
        for name, value in zip(STAT_NAMES, stats, strict=True):
            pooled = jax.ops.segment_sum(counts[:, None] * value, slot, num_slots)
            pooled = pooled / jnp.maximum(totals, 1.0)[:, None]
            old = getattr(self, name)[...]
            new = self.momentum * old + (1.0 - self.momentum) * pooled
            getattr(self, name)[...] = jnp.where(reached, new, old)

    def step_with(self, params: Params, carry: Carry, xp: Array) -> tuple[Carry, Array]:
        carry, y, _ = bn_lstm_step(
            params,
            carry,
            xp,
            self.compute_dtype,
            use_running_average=self.use_running_average,
            eps=self.eps,
        )
        return carry, y


register_cell("bn_lstm", BNLSTMCell)
