"""Instruments for vanishing and exploding gradients inside recurrences.

* :func:`hidden_state_gradients`: the norm of the loss gradient with respect to the hidden
  state at every time step, ``||dL/dh_t||``, for every recurrent layer of any model, exactly.
* :func:`jacobian_spectra` / :func:`cell_jacobian_spectrum`: the singular values of the
  recurrent Jacobian ``dh_t/dh_{t-1}`` along a sequence.
* :func:`plot_gradient_flow`, :func:`plot_gradient_heatmap`, :func:`plot_jacobian_spectra`:
  PNG figures (matplotlib's Agg canvas, imported only when a plot is drawn).

How ``dL/dh_t`` is computed. Each recurrent layer (:class:`rnnlab.RNN`,
:class:`rnnlab.layers.LinearRecurrence`) of a copy of the model gets its cell wrapped in
a probe that adds a perturbation ``e_t`` to the state after step ``t``, before the step's
output is read from it:

.. math:: h_t' = f(h_{t-1}', x_t) + e_t, \\qquad y_t = r(h_t'), \\qquad
    \\left.\\frac{\\partial L}{\\partial e_t}\\right|_{e=0} = \\frac{\\partial L}{\\partial h_t}

The perturbations enter the scan as per-step inputs aligned with the layer's inputs, so
padding (zero gradient), resets and reversed layers (indexed by input position) are exact
and nothing about the layer's own code changes. The gradient is the total derivative: it
includes the path through ``y_t`` and every later step. For a linear recurrence the same
perturbation is added to ``b_t``. The state is the whole carry: ``(c, h)`` for an LSTM,
complex ``x_t`` for the LRU (norm over real and imaginary parts); integer leaves (a step
counter) are not perturbed.

The output ``y_t`` of a probed cell is recomputed from the perturbed state: with the cell's
``readout(params, h, xp)`` where it has one (linear cells), otherwise as the carry itself
(Elman, GRU, IndRNN, orthogonal) or its second leaf ``h`` (LSTM-like ``(c, h, ...)``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from rnnlab.cells.base import RecurrentCell
from rnnlab.cells.linear import LinearRecurrentCell
from rnnlab.layers import RNN, LinearRecurrence

Array = jax.Array


# -- probes ------------------------------------------------------------------------------------


def _inexact(leaf) -> bool:
    return jnp.issubdtype(leaf.dtype, jnp.inexact)


def _perturb(carry, eps: Sequence[Array | None]):
    leaves, treedef = jax.tree.flatten(carry)
    out = [leaf if e is None else leaf + e for leaf, e in zip(leaves, eps, strict=True)]
    return jax.tree.unflatten(treedef, out)


def _readout_leaf(carry, y: Array) -> Array:
    """The carry leaf a per-step cell outputs: the carry itself or ``h`` of ``(c, h, ...)``."""
    if not isinstance(carry, tuple | list):
        return carry
    if len(carry) >= 2 and tuple(carry[1].shape) == tuple(y.shape):
        return carry[1]
    raise ValueError(
        "cannot tell which carry leaf the cell outputs: give it a "
        "readout(params, carry, xp) method to use it with rnnlab.diagnostics"
    )


@dataclasses.dataclass
class _Record:
    """What a probe learned about its layer: ``[T, *batch]`` and the carry leaves."""

    steps_batch: tuple[int, ...] | None = None
    carry: Any = None
    params: Any = None
    xp: Any = None
    calls: int = 0
    keep_values: bool = False  # keep the parameters and projected inputs (Jacobians)


class _Probe(RecurrentCell):
    """Wraps a cell: ``xp`` becomes ``(xp, eps_t)`` and the new state gets ``+ eps_t``."""

    def __init__(self, inner: RecurrentCell, eps, record: _Record | None):
        self.inner, self.eps, self.record = inner, eps, record
        self.in_features, self.hidden_features = inner.in_features, inner.hidden_features
        self.dtype, self.param_dtype = inner.dtype, inner.param_dtype

    @property
    def num_feature_axes(self) -> int:
        return self.inner.num_feature_axes

    @property
    def output_features(self) -> int:
        return self.inner.output_features

    def cell_params(self):
        return self.inner.cell_params()

    def initialize_carry(self, input_shape, rngs=None, carry_init=None):
        return self.inner.initialize_carry(input_shape, rngs, carry_init)

    def check_inputs(self, x):
        self.inner.check_inputs(x)

    def project(self, params, x):
        xp = self.inner.project(params, x)
        if self.record is not None:
            self.record.calls += 1
            self.record.steps_batch = tuple(x.shape[: x.ndim - self.num_feature_axes])
            if self.record.keep_values:
                self.record.params, self.record.xp = params, xp
        return xp, self.eps

    def step_with(self, params, carry, xp):
        xp, eps = xp
        new, y = self.inner.step_with(params, carry, xp)
        if self.record is not None:
            self.record.carry = jax.tree.map(lambda c: jax.ShapeDtypeStruct(c.shape, c.dtype), new)
        if eps is None:
            return new, y
        new = _perturb(new, eps)
        if hasattr(self.inner, "readout"):
            return new, self.inner.readout(params, new, xp)
        return new, _readout_leaf(new, y).astype(y.dtype)


class _LinearProbe(_Probe, LinearRecurrentCell):
    """Probe of a linear cell: the perturbation is added to ``b_t``."""

    def coefficients(self, params, xp):
        xp, eps = xp
        a, b = self.inner.coefficients(params, xp)
        if self.record is not None:
            # Whole sequence (LinearRecurrence) or one step (RNN): the carry is [*batch, N].
            batch = self.record.steps_batch[1:]
            self.record.carry = jax.ShapeDtypeStruct(batch + b.shape[-1:], b.dtype)
        return a, b if eps is None else b + eps[0]

    def readout(self, params, h, xp):
        return self.inner.readout(params, h, xp[0])

    def step_with(self, params, carry, xp):
        return LinearRecurrentCell.step_with(self, params, carry, xp)


def _layers(model: nnx.Module) -> list[tuple[str, nnx.Module]]:
    found = [
        ("/".join(str(p) for p in path) or "rnn", module)
        for path, module in nnx.iter_modules(model)
        if isinstance(module, RNN | LinearRecurrence)
    ]
    if not found:
        raise ValueError(
            f"model must contain rnnlab.RNN or LinearRecurrence layers, got "
            f"{type(model).__name__} with none"
        )
    return found


def _install(
    model: nnx.Module,
    eps: Mapping[str, Any] | None,
    records: dict[str, _Record],
    keep_values: bool = False,
):
    """Wraps the cell of every recurrent layer of ``model`` (a fresh copy) in a probe."""
    for name, layer in _layers(model):
        cell = layer.cell
        probe_cls = _LinearProbe if isinstance(cell, LinearRecurrentCell) else _Probe
        records.setdefault(name, _Record(keep_values=keep_values))
        layer.cell = probe_cls(cell, None if eps is None else eps[name], records[name])
        if isinstance(layer, RNN):
            # The probe needs the whole input sequence in ``project`` to attach e_t to x_t,
            # and the step-by-step scan (the fused kernels compute the same maths).
            layer.hoist_input_projection = True
            if getattr(layer, "implementation", "scan") in ("fused", "kernel"):
                layer.implementation = "scan"


def _probe_shapes(model: nnx.Module, run: Callable[[nnx.Module], Any]) -> dict[str, _Record]:
    graphdef, state = nnx.split(model)
    records: dict[str, _Record] = {}

    def record(state):
        copy = nnx.merge(graphdef, state)
        _install(copy, None, records)
        return run(copy)

    jax.eval_shape(record, state)
    for name, rec in records.items():
        if rec.calls != 1:
            raise ValueError(
                f"layer {name!r} ran {rec.calls} times in one loss evaluation; gradient flow "
                "needs each recurrent layer to run once over a whole sequence"
            )
    return records


def _zero_eps(rec: _Record) -> list[Array | None]:
    steps = rec.steps_batch[:1]
    return [
        jnp.zeros(steps + tuple(leaf.shape), leaf.dtype) if _inexact(leaf) else None
        for leaf in jax.tree.leaves(rec.carry)
    ]


# -- gradient flow through time ----------------------------------------------------------------


def _gradient_fn(graphdef: nnx.GraphDef, loss_fn: Callable, model: nnx.Module):
    """``(records, jitted value_and_grad)``, reused for models of the same structure.

    Diagnostics during training evaluate the same loss on the same architecture every few
    hundred steps; keying on ``(graphdef, loss_fn)`` compiles the probed model once.
    """
    key = (graphdef, loss_fn)
    if key not in _GRADIENT_FNS:
        records = _probe_shapes(model, loss_fn)

        def loss(eps, state):
            copy = nnx.merge(graphdef, state)
            _install(copy, eps, {})
            return loss_fn(copy)

        if len(_GRADIENT_FNS) >= 8:
            _GRADIENT_FNS.pop(next(iter(_GRADIENT_FNS)))
        _GRADIENT_FNS[key] = (records, jax.jit(jax.value_and_grad(loss)))
    return _GRADIENT_FNS[key]


_GRADIENT_FNS: dict[Any, tuple[dict[str, _Record], Callable]] = {}


@dataclasses.dataclass
class GradientFlow:
    """``||dL/dh_t||`` per recurrent layer.

    Attributes:
      per_example: layer name -> ``[*batch, T]`` norms of each sequence's state gradient.
      loss: the loss value.
    """

    per_example: dict[str, np.ndarray]
    loss: float

    @property
    def norms(self) -> dict[str, np.ndarray]:
        """Layer name -> ``[T]``: the norm over the whole batch's state at each step."""
        out = {}
        for name, v in self.per_example.items():
            flat = v.reshape(-1, v.shape[-1])
            out[name] = np.sqrt(np.sum(np.square(flat), axis=0))
        return out


def hidden_state_gradients(
    model: nnx.Module, loss_fn: Callable[[nnx.Module], Array]
) -> GradientFlow:
    """``||dL/dh_t||`` at every step of every recurrent layer of ``model``.

    Example::

        >>> import jax.numpy as jnp
        >>> from flax import nnx
        >>> import rnnlab
        >>> from rnnlab.diagnostics import hidden_state_gradients
        >>> model = rnnlab.StackedRNN(2, 8, 2, cell="lstm", rngs=nnx.Rngs(0))
        >>> x = jnp.ones((4, 30, 2))
        >>> flow = hidden_state_gradients(model, lambda m: jnp.sum(m(x)[:, -1]))
        >>> sorted(flow.norms), flow.norms["layers/0"].shape
        (['layers/0', 'layers/1'], (30,))

    Args:
      model: any NNX module whose recurrences are :class:`rnnlab.RNN` or
        :class:`~rnnlab.layers.LinearRecurrence` layers (an ``RNN``, a
        ``StackedRNN``, a task model), each run once per loss evaluation. The model is not
        modified: the probes act on a copy.
      loss_fn: ``loss_fn(model) -> scalar``, closing over the batch.

    Returns:
      a :class:`GradientFlow`; layers are named by their attribute path (``"layers/0"``),
      a bare ``RNN`` as ``"rnn"``. Steps are indexed by input position, for reversed layers
      too.
    """
    graphdef, state = nnx.split(model)
    records, grad_fn = _gradient_fn(graphdef, loss_fn, model)
    eps = {name: _zero_eps(rec) for name, rec in records.items()}
    value, grads = grad_fn(eps, state)
    per_example = {}
    for name, leaves in grads.items():
        rec = records[name]
        total = jnp.zeros(rec.steps_batch, jnp.float32)
        for g in leaves:
            if g is not None:
                axes = tuple(range(len(rec.steps_batch), g.ndim))
                total = total + jnp.sum(jnp.real(g * jnp.conj(g)), axis=axes)
        per_example[name] = np.moveaxis(np.sqrt(np.asarray(total)), 0, -1)
    return GradientFlow(per_example=per_example, loss=float(value))


# -- recurrent Jacobian spectrum ---------------------------------------------------------------


def _flatten_state(carry) -> Array:
    parts = []
    for leaf in jax.tree.leaves(carry):
        if not _inexact(leaf):
            continue
        flat = leaf.reshape(-1)
        if jnp.iscomplexobj(flat):
            parts += [jnp.real(flat), jnp.imag(flat)]
        else:
            parts.append(flat.astype(jnp.float32))
    return jnp.concatenate(parts)


def _unflatten_state(vec: Array, like):
    leaves, treedef = jax.tree.flatten(like)
    out, pos = [], 0
    for leaf in leaves:
        if not _inexact(leaf):
            out.append(leaf)
            continue
        n = leaf.size
        if jnp.iscomplexobj(leaf):
            re, im = vec[pos : pos + n], vec[pos + n : pos + 2 * n]
            out.append(jax.lax.complex(re, im).reshape(leaf.shape).astype(leaf.dtype))
            pos += 2 * n
        else:
            out.append(vec[pos : pos + n].reshape(leaf.shape).astype(leaf.dtype))
            pos += n
    return jax.tree.unflatten(treedef, out)


def _spectrum(cell: RecurrentCell, params, xp: Array, carry0, top_k: int | None) -> np.ndarray:
    """Singular values ``[*batch, T, k]`` of ``dh_t/dh_{t-1}`` along time-major ``xp``."""

    def collect(carry, xp_t):
        new, _ = cell.step_with(params, carry, xp_t)
        return new, carry

    _, prev = jax.lax.scan(collect, carry0, xp)  # state before each step, [T, *batch, ...]
    steps_batch = xp.shape[:-1]
    flat_n = int(np.prod(steps_batch))
    prev = jax.tree.map(lambda c: c.reshape((flat_n, 1) + c.shape[len(steps_batch) :]), prev)
    xp = xp.reshape((flat_n, 1) + xp.shape[len(steps_batch) :])

    def singular_values(carry, xp_t):
        def f(vec):
            new, _ = cell.step_with(params, _unflatten_state(vec, carry), xp_t)
            return _flatten_state(new)

        jac = jax.jacfwd(f)(_flatten_state(carry))
        return jnp.linalg.svd(jac, compute_uv=False)

    sv = np.asarray(jax.jit(jax.vmap(singular_values))(prev, xp))
    sv = sv.reshape(steps_batch + sv.shape[-1:])
    sv = np.moveaxis(sv, 0, -2)  # [*batch, T, k]
    return sv if top_k is None else sv[..., :top_k]


def cell_jacobian_spectrum(
    cell: RecurrentCell, inputs: Array, *, initial_carry=None, top_k: int | None = None
) -> np.ndarray:
    """Singular values of ``dh_t/dh_{t-1}`` for a cell run over ``inputs`` ``[*batch, T, F]``.

    The Jacobian is taken per sequence with respect to the whole (flattened, real) state,
    ``(c, h)`` for an LSTM and ``(Re x, Im x)`` for the LRU. Returns ``[*batch, T, k]`` in
    descending order; ``k`` is the state size or ``top_k``. Normalised cells with batch
    statistics (BN-LSTM) should be in evaluation mode (``cell.eval()``).
    """
    batch = tuple(inputs.shape[:-2])
    carry0 = (
        cell.initialize_carry(batch + tuple(inputs.shape[-1:]))
        if initial_carry is None
        else initial_carry
    )
    params = cell.cell_params()
    xp = cell.project(params, jnp.moveaxis(inputs, -2, 0))
    return _spectrum(cell, params, xp, carry0, top_k)


def jacobian_spectra(
    model: nnx.Module, run: Callable[[nnx.Module], Any], *, top_k: int | None = None
) -> dict[str, np.ndarray]:
    """Recurrent Jacobian singular values for every recurrent layer of ``model``.

    ``run(model)`` runs the model on a batch (eagerly, not under ``jit``); each layer's
    spectrum is then computed along the inputs it received, from the zero initial state.
    Returns layer name -> ``[*batch, T, k]`` (see :func:`cell_jacobian_spectrum`).
    """
    records: dict[str, _Record] = {}
    graphdef, state = nnx.split(model)
    copy = nnx.merge(graphdef, state)
    _install(copy, None, records, keep_values=True)
    run(copy)
    out = {}
    for name, layer in _layers(copy):
        rec = records[name]
        if rec.calls != 1:
            raise ValueError(f"layer {name!r} ran {rec.calls} times; expected once")
        carry0 = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), rec.carry)
        out[name] = _spectrum(layer.cell.inner, rec.params, rec.xp, carry0, top_k)
    return out
