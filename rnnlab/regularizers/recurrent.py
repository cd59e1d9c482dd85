"""Regularisers inside a recurrent layer: recurrent dropout, zoneout and weight drop.

Every random mask is drawn once, outside the time loop, by :func:`sample_layer_masks`:

* recurrent dropout masks (``[*batch, features]``, one per sequence) and the weight-drop mask
  on ``W_hh`` (one per forward pass) enter the scan through the layer's ``params=`` override
  (the cells apply ``params["recurrent_mask"]`` / ``params["update_mask"]`` when present);
* zoneout masks (``[*batch, time, size]`` per carry leaf) are drawn for all steps at once and
  reach the scan as per-step inputs (``RNN(step_inputs=...)``), so the loop body contains no
  random number generation.

:func:`rnnlab.layers.regularized_rnn` runs an :class:`rnnlab.RNN` with these, for training
(``deterministic=False``) or evaluation. The functions here take the layer only for its
``cell`` and ``time_major`` (anything with those two attributes serves).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from rnnlab.regularizers.config import Regularization
from rnnlab.regularizers.dropout import KeyLike, as_key, keep_mask

Array = jax.Array
Carry = Any

# The recurrent weight that weight drop acts on, in every rnnlab cell.
RECURRENT_KERNEL = "kernel_hh"


class LayerMasks(NamedTuple):
    """The random masks of one recurrent layer for one forward pass (``None``: not used).

    Attributes:
      recurrent: ``[*batch, P]`` inverted-dropout multiplier on ``h_{t-1}`` before ``W_hh``.
      update: ``[*batch, H]`` multiplier on the candidate update (Semeniuta et al. 2016).
      kernel: multiplier with the shape of ``W_hh`` (weight drop).
      zoneout: one bool array per carry leaf, ``[*batch, time, size]`` in the layer's
        layout (time first if ``time_major``); ``True`` keeps the previous value.
    """

    recurrent: Array | None = None
    update: Array | None = None
    kernel: Array | None = None
    zoneout: tuple[Array | None, ...] | None = None


def zoneout_rates(cell, reg: Regularization) -> tuple[float, ...]:
    """Zoneout rate per carry leaf: ``zoneout_h`` for the last leaf (the hidden state that
    is also the output), ``zoneout_c`` for the others (the LSTM cell state)."""
    n = len(cell.carry_sizes())
    return (reg.zoneout_c,) * (n - 1) + (reg.zoneout_h,)


def check_layer_support(cell, reg: Regularization) -> None:
    """Raises a ValueError when ``cell`` cannot apply what ``reg`` asks for."""
    hooks = getattr(cell, "mask_hooks", ())
    if reg.recurrent_dropout > 0:
        hook = "recurrent_mask" if reg.recurrent_dropout_kind == "gal" else "update_mask"
        if hook not in hooks:
            raise ValueError(
                f"recurrent_dropout_kind={reg.recurrent_dropout_kind!r} needs a cell that "
                f"applies params[{hook!r}]; {type(cell).__name__} supports {hooks}"
            )
    if reg.weight_drop > 0 and RECURRENT_KERNEL not in cell.cell_params():
        raise ValueError(
            f"weight_drop needs a recurrent kernel named {RECURRENT_KERNEL!r}; "
            f"{type(cell).__name__} has {sorted(cell.cell_params())}"
        )


def sample_layer_masks(
    rngs: KeyLike,
    rnn: Any,
    reg: Regularization,
    batch_shape: tuple[int, ...],
    num_steps: int,
) -> LayerMasks:
    """Draws every mask one layer needs for one forward pass, outside the time loop."""
    cell = rnn.cell
    check_layer_support(cell, reg)
    k_rec, k_kernel, k_zone = jax.random.split(as_key(rngs), 3)
    params = cell.cell_params()
    recurrent = update = kernel = zoneout = None
    if reg.recurrent_dropout > 0:
        if reg.recurrent_dropout_kind == "gal":
            size = params[RECURRENT_KERNEL].shape[0]
            recurrent = keep_mask(k_rec, reg.recurrent_dropout, batch_shape + (size,))
        else:
            update = keep_mask(k_rec, reg.recurrent_dropout, batch_shape + (cell.hidden_features,))
    if reg.weight_drop > 0:
        w = params[RECURRENT_KERNEL]
        kernel = keep_mask(k_kernel, reg.weight_drop, w.shape, w.dtype)
    rates = zoneout_rates(cell, reg)
    if any(r > 0 for r in rates):
        keys = jax.random.split(k_zone, len(rates))
        leaves = []
        for key, rate, size in zip(keys, rates, cell.carry_sizes(), strict=True):
            if rate == 0:
                leaves.append(None)
                continue
            shape = (
                (num_steps,) + batch_shape + (size,)
                if rnn.time_major
                else batch_shape + (num_steps, size)
            )
            leaves.append(jax.random.bernoulli(key, rate, shape))
        zoneout = tuple(leaves)
    return LayerMasks(recurrent, update, kernel, zoneout)


def masked_params(cell, masks: LayerMasks) -> dict[str, Array]:
    """The cell's parameters with weight drop applied and recurrent-dropout masks added."""
    params = dict(cell.cell_params())
    if masks.kernel is not None:
        params[RECURRENT_KERNEL] = params[RECURRENT_KERNEL] * masks.kernel
    if masks.recurrent is not None:
        params["recurrent_mask"] = masks.recurrent
    if masks.update is not None:
        params["update_mask"] = masks.update
    return params


def _with_zoned_output(step_out: Carry, y: Array, mixed: list[Array], treedef) -> tuple:
    last = mixed[-1]
    if last.shape != y.shape:
        raise ValueError(
            "zoneout needs a cell whose output is its last carry leaf; got output shape "
            f"{tuple(y.shape)} and last carry leaf shape {tuple(last.shape)}"
        )
    # The zoned hidden state is what the next layer sees (Krueger et al. 2016, eq. 4).
    return treedef.unflatten(mixed), last.astype(y.dtype)


def zoneout_train_step(step: Callable) -> Callable:
    """Wraps ``step`` so that each carry leaf keeps its previous value where the mask is set.

    .. math:: s_t = d_t \\odot s_{t-1} + (1 - d_t) \\odot f(s_{t-1}, x_t),
       \\quad d_t \\sim \\mathrm{Bernoulli}(z)

    The wrapped step takes ``(x_t, d_t)`` with ``d_t`` one bool array (or ``None``) per leaf.
    """

    def wrapped(carry, inputs):
        x, keep = inputs
        new_carry, y = step(carry, x)
        old, treedef = jax.tree.flatten(carry)
        new = treedef.flatten_up_to(new_carry)
        mixed = [
            n if k is None else jnp.where(k, o, n) for o, n, k in zip(old, new, keep, strict=True)
        ]
        return _with_zoned_output(new_carry, y, mixed, treedef)

    return wrapped


def zoneout_eval_step(rates: tuple[float, ...]) -> Callable[[Callable], Callable]:
    """Evaluation-time zoneout: the expectation ``s_t = z s_{t-1} + (1 - z) f(s_{t-1}, x_t)``.

    Krueger et al. (2016) replace the random masks by their expectation at test time, as
    dropout's weight scaling does.
    """

    def transform(step):
        def wrapped(carry, x):
            new_carry, y = step(carry, x)
            old, treedef = jax.tree.flatten(carry)
            new = treedef.flatten_up_to(new_carry)
            mixed = [
                n if r == 0 else r * o + (1.0 - r) * n
                for o, n, r in zip(old, new, rates, strict=True)
            ]
            return _with_zoned_output(new_carry, y, mixed, treedef)

        return wrapped

    return transform


class LayerPlan(NamedTuple):
    """How one layer runs under regularisation, for any scan over its cell.

    Attributes:
      params: the cell parameters to use (weight-dropped kernel, mask entries); ``None``
        means the cell's own.
      step_transform: wraps ``step(carry, x) -> (carry, y)`` (zoneout), or ``None``.
      step_inputs: per-step inputs for the wrapped step, in the layer's layout
        (``[*batch, time, ...]``; time first if ``time_major``), or ``None``.
    """

    params: dict[str, Array] | None = None
    step_transform: Callable | None = None
    step_inputs: Any = None


def prepare_layer(
    rnn: Any,
    reg: Regularization,
    *,
    batch_shape: tuple[int, ...],
    num_steps: int,
    rngs: KeyLike | None = None,
    deterministic: bool = True,
    masks: LayerMasks | None = None,
) -> LayerPlan:
    """Draws the masks of one forward pass and says how to run the layer with them.

    :func:`rnnlab.layers.regularized_rnn` passes the plan to :class:`rnnlab.RNN`
    (``params``, ``step_transform``, ``step_inputs``).
    """
    if not reg.recurrent_active:
        return LayerPlan()
    cell = rnn.cell
    check_layer_support(cell, reg)
    if deterministic:
        rates = zoneout_rates(cell, reg)
        return LayerPlan(
            step_transform=zoneout_eval_step(rates) if any(r > 0 for r in rates) else None
        )
    if masks is None:
        masks = sample_layer_masks(as_key(rngs), rnn, reg, batch_shape, num_steps)
    params = masked_params(cell, masks)
    if masks.zoneout is None:
        return LayerPlan(params=params)
    return LayerPlan(params, zoneout_train_step, masks.zoneout)
