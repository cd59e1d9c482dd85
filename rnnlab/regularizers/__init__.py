"""The recurrent regularisation toolkit: every technique a switch, all off by default.

* Sequence dropout: :func:`dropout`, :func:`locked_dropout` (variational, one mask per
  sequence), :func:`embedding_dropout` / :func:`embed_with_dropout` (whole words).
* Inside the recurrence (masks drawn once, outside the scan): recurrent dropout (Gal &
  Ghahramani 2016; Semeniuta et al. 2016), zoneout (Krueger et al. 2016), weight drop
  (Merity et al. 2017): :func:`sample_layer_masks`, :func:`prepare_layer`; a layer runs
  under them with :func:`rnnlab.layers.regularized_rnn`.
* Whole stacks from config: :class:`Regularization`, the ``regularization`` option of
  :class:`rnnlab.layers.StackedRNN`.
* Loss terms: :func:`activation_regularization`, :func:`temporal_activation_regularization`,
  :func:`l2_penalty`.

Weight averaging (NT-ASGD, EMA) and decoupled weight decay are optimizer code: they live in
:mod:`rnnlab.optim`.

See docs/overfitting.md.
"""

from rnnlab.regularizers.config import RECURRENT_DROPOUT_KINDS, Regularization, check_rate
from rnnlab.regularizers.dropout import (
    dropout,
    embed_with_dropout,
    embedding_dropout,
    keep_mask,
    locked_dropout,
    sequence_dropout,
)
from rnnlab.regularizers.losses import (
    activation_regularization,
    ar_tar_losses,
    l2_penalty,
    temporal_activation_regularization,
)
from rnnlab.regularizers.recurrent import (
    LayerMasks,
    LayerPlan,
    masked_params,
    prepare_layer,
    sample_layer_masks,
    zoneout_eval_step,
    zoneout_train_step,
)

__all__ = [
    "RECURRENT_DROPOUT_KINDS",
    "LayerMasks",
    "LayerPlan",
    "Regularization",
    "activation_regularization",
    "ar_tar_losses",
    "check_rate",
    "dropout",
    "embed_with_dropout",
    "embedding_dropout",
    "keep_mask",
    "l2_penalty",
    "locked_dropout",
    "masked_params",
    "prepare_layer",
    "sample_layer_masks",
    "sequence_dropout",
    "temporal_activation_regularization",
    "zoneout_eval_step",
    "zoneout_train_step",
]
