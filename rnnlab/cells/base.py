"""The contract every rnnlab cell follows.

A cell is a Flax NNX module that owns parameters; its maths is a pair of pure functions:

* ``project(params, x) -> xp``: the input half of the gate pre-activations. It has no time
  dependence, so a layer may compute it for all time steps in one matmul (the fast path on
  GPU/TPU) or per step inside the scan (measured faster on XLA's CPU backend).
* ``step(params, carry, xp) -> (carry, y)``: the recurrent half.

``cell(carry, x)`` is ``step(project(x))``, which is Flax's cell contract, so rnnlab cells run
inside ``flax.nnx.RNN`` unchanged. Layers call :meth:`RecurrentCell.cell_params` once, outside
the time loop, and pass the arrays into the loop: regularisers such as weight drop can then
rewrite the parameters once per sequence without touching the cell.

Carries are float32 whatever the compute ``dtype``: a long recurrence accumulates rounding
error in its state, and float32 carries are what cuDNN and recurrentgemma keep too.

Input dtypes follow Flax's cells: integer and boolean inputs are promoted to the cell's
compute dtype (``dtype``, else ``param_dtype``), which is what ``flax.nnx``'s
``promote_dtype`` gives an integer input next to floating parameters. Complex inputs are
refused: the gates' sigmoid and the saturating ``tanh`` have poles on the complex plane, so
a gated or simple cell has no bounded complex form (the LRU keeps a complex *state* behind
real inputs and outputs); split a complex signal into its real and imaginary features.

A cell whose steps produce something for the cell itself rather than the next layer (the
batch statistics a batch-normalised cell normalises with in training) says so with
:attr:`RecurrentCell.step_extras`; the layer then runs :meth:`RecurrentCell.step_with_extras`
on the scan path, stacks the extras over time and hands them back once, after the sequence,
to :meth:`RecurrentCell.aggregate_extras` (the running averages). The runner knows nothing
of what the extras are.

Every cell's constructor also takes NNX's partitioning metadata (:mod:`rnnlab.cells.params`):
``kernel_metadata``, ``recurrent_kernel_metadata``, ``bias_metadata`` (e.g.
``{"sharding_names": ("embed", "hidden")}``) and ``param_metadata`` (by parameter name), and
its initialisers may be ``nnx.with_partitioning(init, names)``.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from rnnlab.cells.params import annotate_params, metadata_taking

Array = jax.Array
Carry = Any
Params = dict[str, Array]

CARRY_DTYPE = jnp.float32


def check_positive_int(name: str, value: Any) -> int:
    """Returns ``value`` if it is a positive int, else raises a ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


def check_one_of(name: str, value: Any, choices) -> Any:
    """Returns ``value`` if it is one of ``choices``, else raises a ValueError listing them."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {sorted(choices)}, got {value!r}")
    return value


def matmul(x: Array, w: Array, dtype) -> Array:
    """``x @ w`` computed in ``dtype`` with a float32 result.

    Casting both operands keeps strict dtype promotion happy and lets bfloat16 compute use
    the fast kernels while the gate arithmetic that follows stays in float32.
    """
    return jnp.matmul(x.astype(dtype), w.astype(dtype), preferred_element_type=jnp.float32)


class RecurrentCell(nnx.RNNCellBase):
    """Base class: Flax's cell contract plus the ``project`` / ``step`` split.

    Subclasses set ``in_features``, ``hidden_features``, ``dtype``, ``param_dtype`` (most
    through :meth:`set_features`) and ``param_names``, and implement :meth:`project` and
    :meth:`step_with`.
    """

    in_features: int
    hidden_features: int
    param_names: tuple[str, ...] = ()

    def __init_subclass__(cls, **kwargs):
        # Each constructor gains the NNX ``*_metadata`` arguments without repeating them in
        # every cell's signature; the outermost constructor applies them once, at its end.
        super().__init_subclass__(**kwargs)
        if "__init__" in cls.__dict__:
            cls.__init__ = metadata_taking(cls.__dict__["__init__"], annotate_params)

    def set_features(
        self, in_features: int, hidden_features: int, dtype, param_dtype, carry_init=None
    ) -> None:
        """Checks and stores what every cell's constructor takes: the input and cell sizes,
        the compute and parameter dtypes and the carry initialiser."""
        self.in_features = check_positive_int("in_features", in_features)
        self.hidden_features = check_positive_int("hidden_features", hidden_features)
        self.dtype, self.param_dtype, self.carry_init = dtype, param_dtype, carry_init

    @property
    def num_feature_axes(self) -> int:
        return 1

    @property
    def output_features(self) -> int:
        """Size of the output ``y`` (differs from ``hidden_features`` with a projection)."""
        return self.hidden_features

    @property
    def compute_dtype(self):
        return self.dtype if self.dtype is not None else self.param_dtype

    # -- parameters ------------------------------------------------------------------------
    def cell_params(self) -> Params:
        """The cell's parameter arrays by name, read once outside the time loop."""
        out = {}
        for name in self.param_names:
            var = getattr(self, name, None)
            if var is not None:
                out[name] = var[...]
        return out

    # -- maths -----------------------------------------------------------------------------
    def project(self, params: Params, x: Array) -> Array:
        """Input half of the pre-activations for ``x`` of shape ``[..., in_features]``."""
        raise NotImplementedError

    def step_with(self, params: Params, carry: Carry, xp: Array) -> tuple[Carry, Array]:
        """Recurrent half: one time step from projected input ``xp``."""
        raise NotImplementedError

    # -- per-step extras (a cell's own bookkeeping, e.g. batch statistics) -------------------
    @property
    def step_extras(self) -> bool:
        """Whether this call's steps return extras for :meth:`aggregate_extras` (a mode of
        the cell, e.g. a batch-normalised cell in training). ``False`` by default."""
        return False

    def step_with_extras(
        self, params: Params, carry: Carry, xp: Array, valid: Array | None
    ) -> tuple[Carry, Array, Any]:
        """:meth:`step_with` that also returns a per-step value that is not per example.

        ``valid`` (bool ``[*batch]``, ``None`` without padding) marks the examples whose
        step is real, so that the value describes only them. Returns ``(carry, y, extra)``.
        """
        raise NotImplementedError

    def aggregate_extras(self, extras: Any, valid: Array) -> None:
        """Called once after a sequence with the extras of every step stacked on a leading
        time axis (processing order) and the validity mask ``[time, *batch]``; the cell
        updates its own state from them (e.g. running averages)."""
        raise NotImplementedError

    def project_inputs(self, x: Array, params: Params | None = None) -> Array:
        """:meth:`project` with this cell's own parameters unless ``params`` is given."""
        x = self.promote_inputs(x)
        return self.project(self.cell_params() if params is None else params, x)

    def step(self, carry: Carry, xp: Array, params: Params | None = None) -> tuple[Carry, Array]:
        """:meth:`step_with` with this cell's own parameters unless ``params`` is given."""
        return self.step_with(self.cell_params() if params is None else params, carry, xp)

    def __call__(self, carry: Carry, inputs: Array) -> tuple[Carry, Array]:
        params = self.cell_params()
        inputs = self.promote_inputs(inputs)
        return self.step_with(params, carry, self.project(params, inputs))

    # -- carries ---------------------------------------------------------------------------
    def carry_sizes(self) -> tuple[int, ...]:
        """Feature sizes of the carry leaves, in carry order (one leaf by default)."""
        return (self.hidden_features,)

    def no_vector_carry(self, layout: str):
        """Raises for a cell whose carry leaves are not ``[*batch, size]`` vectors (what
        zoneout and a seq2seq bridge need); ``layout`` describes its carry."""
        raise ValueError(
            f"{type(self).__name__}'s carry is {layout}, not one vector per leaf: zoneout "
            "and carry bridges do not apply to it"
        )

    def initialize_carry(
        self,
        input_shape: tuple[int, ...],
        rngs: nnx.Rngs | nnx.RngStream | None = None,
        carry_init=None,
    ) -> Carry:
        """Zero (or ``carry_init``) float32 carry for inputs of shape ``[*batch, features]``.

        A random ``carry_init`` draws from ``rngs`` (its ``carry`` stream, or the stream
        itself, as ``flax.nnx.RNN`` passes it); without ``rngs`` from a fixed key, folded
        per leaf so that the leaves (e.g. an LSTM's ``c`` and ``h``) differ.
        """
        batch = tuple(input_shape[: len(input_shape) - self.num_feature_axes])
        init = carry_init or getattr(self, "carry_init", None)
        leaves = []
        for index, size in enumerate(self.carry_sizes()):
            if init is None:
                leaves.append(jnp.zeros(batch + (size,), CARRY_DTYPE))
            else:
                if isinstance(rngs, nnx.Rngs):
                    key = rngs.carry()
                elif isinstance(rngs, nnx.RngStream):
                    key = rngs()
                else:
                    key = jax.random.fold_in(jax.random.key(0), index)
                leaves.append(init(key, batch + (size,), CARRY_DTYPE))
        return leaves[0] if len(leaves) == 1 else tuple(leaves)

    # -- validation ------------------------------------------------------------------------
    def promote_inputs(self, x: Array) -> Array:
        """Checks ``x`` (:meth:`check_inputs`) and casts integer or boolean inputs to the
        compute dtype, as Flax's cells do; floating inputs are returned unchanged."""
        x = jnp.asarray(x)
        self.check_inputs(x)
        if jnp.issubdtype(x.dtype, jnp.integer) or x.dtype == jnp.bool_:
            return x.astype(self.compute_dtype)
        return x

    def check_inputs(self, x: Array) -> None:
        """Raises a ValueError naming the mismatch when ``x`` does not fit the cell."""
        if x.ndim < self.num_feature_axes:
            raise ValueError(
                f"inputs must have at least {self.num_feature_axes} feature axis, "
                f"got shape {tuple(x.shape)}"
            )
        if x.shape[-1] != self.in_features:
            raise ValueError(
                f"inputs feature size must equal in_features={self.in_features} of "
                f"{type(self).__name__}, got {x.shape[-1]} (shape {tuple(x.shape)})"
            )
        if jnp.issubdtype(x.dtype, jnp.complexfloating):
            raise ValueError(
                f"complex inputs (dtype {x.dtype}) are not supported by {type(self).__name__}: "
                "its gates have no bounded complex form; pass the real and imaginary parts "
                "as separate features"
            )
        if not (jnp.issubdtype(x.dtype, jnp.number) or x.dtype == jnp.bool_):
            raise ValueError(f"inputs must be numbers, got dtype {x.dtype}")
