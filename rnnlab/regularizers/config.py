"""The regularisation switches of a model, as one validated, hashable value.

:class:`Regularization` is what an experiment's config holds (``config.model.regularization``)
and what :class:`rnnlab.layers.StackedRNN` reads (its ``regularization`` option). Every
field is off by default, and a default ``Regularization()`` leaves a model's outputs
bit-identical to the plain layers.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

RECURRENT_DROPOUT_KINDS = ("gal", "semeniuta")

# Fields that are dropout probabilities: valid in [0, 1), since inverted scaling divides by
# 1 - rate. Zoneout rates may be 1 (the state never updates), so they are checked apart.
_DROPOUT_RATES = (
    "input_dropout",
    "hidden_dropout",
    "output_dropout",
    "recurrent_dropout",
    "weight_drop",
    "embedding_dropout",
)
_ZONEOUT_RATES = ("zoneout_c", "zoneout_h")
_COEFFICIENTS = ("ar", "tar")


def _bad(key: str, expected: str, got: Any) -> ValueError:
    err = ValueError(f"regularization: {key!r} must be {expected}, got {got!r}")
    err.argument = key  # type: ignore[attr-defined]
    return err


def check_rate(key: str, rate: Any, *, allow_one: bool = False) -> float:
    """Returns ``rate`` as a float if it lies in ``[0, 1)`` (``[0, 1]`` with ``allow_one``).

    Raises a ValueError naming ``key`` otherwise.
    """
    interval = "[0, 1]" if allow_one else "[0, 1)"
    if isinstance(rate, bool) or not isinstance(rate, int | float):
        raise _bad(key, f"a number in {interval}", rate)
    rate = float(rate)
    if not (0.0 <= rate < 1.0 or (allow_one and rate == 1.0)):
        raise _bad(key, f"in {interval}", rate)
    return rate


@dataclasses.dataclass(frozen=True)
class Regularization:
    """Every recurrent regulariser of rnnlab, each off by default.

    Attributes:
      input_dropout: dropout on the input of the first recurrent layer (AWD-LSTM
        ``dropouti``).
      hidden_dropout: dropout between stacked recurrent layers (``dropouth``); replaces the
        stack's own ``dropout`` argument when set.
      output_dropout: dropout on the output of the last recurrent layer (``dropout``).
      variational: input, hidden and output dropout use one mask per sequence, shared by
        all time steps (locked dropout; Gal & Ghahramani 2016).
      recurrent_dropout: dropout inside the recurrence, one mask per sequence.
      recurrent_dropout_kind: ``"gal"`` drops the hidden state where it enters the recurrent
        matmul (Gal & Ghahramani 2016); ``"semeniuta"`` drops the candidate update ``g``
        (LSTM) / ``n`` (GRU) (Semeniuta et al. 2016).
      zoneout_c, zoneout_h: zoneout probabilities of the cell state (LSTM ``c``) and the
        hidden state (Krueger et al. 2016); in ``[0, 1]``.
      weight_drop: DropConnect on the recurrent kernel ``W_hh``, one mask per forward pass
        (Merity et al. 2017).
      embedding_dropout: probability of dropping a whole word type from the embedding
        matrix (Gal & Ghahramani 2016; Merity et al. 2017); applied by the model that owns
        the embedding, with :func:`rnnlab.regularizers.embedding_dropout`.
      ar, tar: coefficients of activation and temporal activation regularisation
        (Merity et al. 2017), ``>= 0``.
    """

    input_dropout: float = 0.0
    hidden_dropout: float = 0.0
    output_dropout: float = 0.0
    variational: bool = False
    recurrent_dropout: float = 0.0
    recurrent_dropout_kind: str = "gal"
    zoneout_c: float = 0.0
    zoneout_h: float = 0.0
    weight_drop: float = 0.0
    embedding_dropout: float = 0.0
    ar: float = 0.0
    tar: float = 0.0

    def __post_init__(self):
        for key in _DROPOUT_RATES:
            object.__setattr__(self, key, check_rate(key, getattr(self, key)))
        for key in _ZONEOUT_RATES:
            object.__setattr__(self, key, check_rate(key, getattr(self, key), allow_one=True))
        for key in _COEFFICIENTS:
            value = getattr(self, key)
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
                or value < 0
            ):
                raise _bad(key, "a finite number >= 0", value)
            object.__setattr__(self, key, float(value))
        if not isinstance(self.variational, bool):
            raise _bad("variational", "a bool", self.variational)
        if self.recurrent_dropout_kind not in RECURRENT_DROPOUT_KINDS:
            raise _bad(
                "recurrent_dropout_kind",
                f"one of {RECURRENT_DROPOUT_KINDS}",
                self.recurrent_dropout_kind,
            )

    # -- construction --------------------------------------------------------------------
    @classmethod
    def from_config(cls, config: Any = None) -> Regularization:
        """Builds from a mapping or ``ml_collections.ConfigDict``; ``None`` is all off.

        Unknown keys raise a ValueError that lists the known ones, so a typo in a config
        cannot silently switch a regulariser off.
        """
        if config is None:
            return cls()
        if isinstance(config, cls):
            return config
        if hasattr(config, "to_dict"):
            config = config.to_dict()
        if not isinstance(config, Mapping):
            raise _bad("regularization", "a mapping or ConfigDict", type(config).__name__)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(config) - known)
        if unknown:
            raise _bad("regularization", f"keys among {sorted(known)}", unknown)
        return cls(**dict(config))

    @classmethod
    def awd_lstm(cls, **overrides) -> Regularization:
        """The Penn Treebank recipe of AWD-LSTM (Merity et al. 2017; their released settings).

        Locked dropout 0.4 (input) / 0.25 (between layers) / 0.4 (output), embedding
        dropout 0.1, weight drop 0.5, AR 2, TAR 1. WikiText-2 used input dropout 0.65 and
        hidden dropout 0.2. Pair it with :func:`rnnlab.optim.nt_asgd`.
        """
        values = dict(
            input_dropout=0.4,
            hidden_dropout=0.25,
            output_dropout=0.4,
            variational=True,
            weight_drop=0.5,
            embedding_dropout=0.1,
            ar=2.0,
            tar=1.0,
        )
        values.update(overrides)
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of every field (for ``ml_collections.ConfigDict`` and JSON)."""
        return dataclasses.asdict(self)

    def replace(self, **changes) -> Regularization:
        """A copy with ``changes`` applied (and validated)."""
        return dataclasses.replace(self, **changes)

    # -- queries -------------------------------------------------------------------------
    @property
    def recurrent_active(self) -> bool:
        """Whether anything acts inside a recurrent layer (masks, zoneout, weight drop)."""
        return (
            self.recurrent_dropout > 0
            or self.zoneout_c > 0
            or self.zoneout_h > 0
            or self.weight_drop > 0
        )

    @property
    def active(self) -> bool:
        """Whether any switch is on (a default ``Regularization`` changes nothing)."""
        return self.stochastic or self.ar > 0 or self.tar > 0

    @property
    def stochastic(self) -> bool:
        """Whether training needs random numbers (any rate above zero)."""
        return any(getattr(self, k) > 0 for k in _DROPOUT_RATES + _ZONEOUT_RATES)
