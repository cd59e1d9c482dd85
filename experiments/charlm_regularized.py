"""Character LM on part of one novel, with and without the AWD-LSTM regularisation recipe.

A model large for its data overfits: a 256-unit LSTM (355 K parameters) trained for 60
epochs on the first 30 % of *Pride and Prejudice* (205 K characters) learns the training
text better and better while its validation bits per character turn back up. The same
model and budget under the recipe of the overfitting toolkit
(``rnnlab.regularizers.Regularization``: locked input and output dropout, DropConnect on
the recurrent weights, activation and temporal activation regularisation; Merity et al.
2017) keeps the train/validation gap small and ends lower on held-out text. The checkpoint
that is best on the validation split is scored on the test split (and on the training
split, for the gap); the plain run is the peer baseline of the recipe.

Commands::

    rnnlab train --config experiments/charlm_regularized.py:plain --workdir workdirs/charlm-plain
    rnnlab train --config experiments/charlm_regularized.py:recipe --workdir workdirs/charlm-recipe
    rnnlab eval --workdir workdirs/charlm-recipe --split test

Variants: ``plain`` (every regulariser off: the plain language model, bit for bit),
``recipe`` (the regularised run), ``small`` (CI smoke run of the recipe).

Data: ``austen`` restricted to ``prideprejudice``, split 30/35/35 by position (205 K / 240 K
/ 240 K characters: a small training set, and held-out splits large enough to measure
it); 128-character windows carried across batches (truncated backpropagation through time).

Model: ``rnnlab.models`` "regularized_language_model": a 64-dimensional embedding, one
LSTM layer of 256 units, a linear decoder; Adam 3e-3 with 50 warm-up steps and a cosine
decay to 5 %, clipping at global norm 1; batch 32 x 128 characters, 3,000 steps,
evaluated every 250 steps on the whole validation split.

Hardware: 2 CPU cores (AMD EPYC), one JAX CPU device. Measured numbers and a sample are
in experiments/README.md (``make results``).
"""

from __future__ import annotations

import ml_collections

from experiments import settings
from rnnlab.regularizers import Regularization
from rnnlab.train.config import base_config, lock

VARIANTS = ("plain", "recipe", "small")

# Locked (variational) dropout on the embedded characters and on the LSTM output, weight
# drop on W_hh, AR/TAR as in AWD-LSTM, at rates lighter than its word-level ones (a
# 3,000-step budget: at 0.1/0.3/0.5 the model was still underfitting when it ended). No
# embedding (character-type) dropout: with 80 symbols it would blank out whole letters.
RECIPE = Regularization.awd_lstm(
    input_dropout=0.05,
    hidden_dropout=0.0,
    output_dropout=0.2,
    embedding_dropout=0.0,
    weight_drop=0.25,
)


def get_config(arg: str = "recipe") -> ml_collections.ConfigDict:
    """One of :data:`VARIANTS` (``""`` is ``recipe``)."""
    arg = settings.variant("charlm_regularized", arg, VARIANTS, default="recipe")
    c = base_config()
    c.seed = 0
    c.data.name = "austen"
    c.data.novels = ("prideprejudice",)
    c.data.split_fractions = (0.3, 0.35, 0.35)
    c.data.seq_len = 128

    c.model.name = "regularized_language_model"
    c.model.cell = "lstm"
    c.model.embed_features = 64
    c.model.hidden_features = 256
    c.model.num_layers = 1
    c.model.regularization = (Regularization() if arg == "plain" else RECIPE).to_dict()

    settings.adam_cosine(c, warmup_steps=50)

    settings.train_steps(c, 3000, batch_size=32, log_every=50, eval_every=250, checkpoint_every=250)

    c.sample.length = 300
    c.sample.temperature = 0.7
    c.sample.prompt = "It is a truth universally acknowledged"

    if arg == "small":
        c.data.seq_len = 32
        c.model.embed_features = 16
        c.model.hidden_features = 32
        c.optim.lr = 1e-2
        c.optim.warmup_steps = 5
        settings.train_steps(c, 40, batch_size=16, log_every=10, eval_every=20, checkpoint_every=20)
        c.eval.max_batches = 5
        c.sample.length = 40
    return lock(c)
