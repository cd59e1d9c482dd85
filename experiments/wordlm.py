"""Word-level LSTM language model in the setting of Zaremba, Sutskever & Vinyals (2014).

Their "medium" model, two LSTM layers of 650 units with dropout 0.5 on the non-recurrent
connections, reaches 82.7 test perplexity on the Penn Treebank (10 K words, 929 K training
tokens; "large", 2 x 1500 with dropout 0.65: 78.4). The settings below follow theirs:
35-step truncated backpropagation with the state carried across batches, batch 20, plain
SGD at learning rate 1, gradients clipped at norm 5, 39 epochs (of PTB's size: 2,300
steps). Two differences: the learning rate is divided by 1.2 every epoch from the first
(``optim.schedule = "step"``; theirs from the seventh), and rnnlab's initialisers replace
their uniform one.

Data: the Penn Treebank is not in the TFDS catalog; the word-level corpus rnnlab reads is
TFDS ``lm1b`` (One Billion Word, sentences packed into rows, a 32,768-word vocabulary from
the first 300,000 training sentences), which users prepare with ``tfds build lm1b`` or reach
through ``data.tfds_data_dir``. Perplexities on lm1b with this vocabulary are not
comparable with the PTB figure; the target of a user with PTB is 82.7. The development
machine has no network, so there is no measured number here. ``small`` reads Jane Austen's
novels offline as words instead (``data.name = "austen"``, ``data.level = "word"``: a
vocabulary of the 256 most frequent words of the training split, the rest ``<unk>``), a
tiny model for plumbing; ``data.max_vocab = 10000`` gives the PTB-sized setting.

Commands::

    rnnlab train --config experiments/wordlm.py:medium --workdir workdirs/wordlm-medium
    rnnlab eval --workdir workdirs/wordlm-medium --split test

Variants: ``medium`` (default), ``large``, ``awd`` (the medium model under the AWD-LSTM
regularisation recipe of ``rnnlab.regularizers``, tied embeddings, and their optimiser
NT-ASGD: SGD at learning rate 30, gradients clipped at 0.25, L2 weight decay 1.2e-6 on
matrices, iterates averaged once the validation loss, checked every epoch, is worse than
the best of those more than 5 epochs old; evaluation and the best checkpoint use the
average. Merity et al. 2017 report 57.3 on PTB with 3 layers after 750 epochs; this
variant keeps the 39 epochs of the others), ``small``, and ``tpu`` / ``tpu,v6e``. The
offline study of the same regularisers on a character model is experiments/overfitting.py.

Hardware: meant for one GPU or TPU chip; ``tpu`` for a TPU pod slice.

TPU (``tpu`` for a v5e slice, ``tpu,v6e`` for v6e; see docs/tpu.md and
experiments/tpu_slices.py)::

    tpu/run.sh experiments/wordlm.py:tpu

The paper's "large" model (2 x 1500, dropout 0.65) in bfloat16 compute with float32
parameters and carries. Global batch: 16 per chip on v5e (``v5litepod-16``: 256), 32 per
chip on v6e (``v6e-8``: 256); mesh ``data=-1``. The schedule keeps the tokens of the
others' 39 epochs (steps and decay interval scaled by 20 / 256); the learning rate stays
the paper's, untuned for the larger batch.

Compile-time estimates (``rnnlab compile --config experiments/wordlm.py:tpu --topology
v5litepod-16``; libtpu 0.0.42.1's compiler on a CPU with lm1b's declared features, not a
measured run; docs/tpu.md): the train step needs 1,330 MiB per v5e chip of its 16 GiB; its
roofline floor is 10.7 ms per step, bound by HBM bandwidth, so at most 0.84 M tokens/s, a
model FLOP utilisation of 14 % at that bound; the gradient all-reduce moves 419 MiB per
step. Measured step time and perplexity: none recorded yet.
"""

from __future__ import annotations

import ml_collections

from experiments import settings, tpu_slices
from rnnlab.regularizers import Regularization
from rnnlab.train.config import base_config, lock

VARIANTS = ("medium", "large", "awd", "small", "tpu", "tpu,v5e", "tpu,v6e")
PTB_EPOCH_STEPS = 2300  # 929 K tokens / (20 x 35)
TPU_BATCH_PER_CHIP = {"v5e": 16, "v6e": 32}


def get_config(arg: str = "medium") -> ml_collections.ConfigDict:
    """One of :data:`VARIANTS` (``""`` is ``medium``)."""
    arg = settings.variant("wordlm", arg, VARIANTS, default="medium")
    generation = tpu_slices.parse(arg.split(","), "wordlm")
    if generation is not None:
        arg = "large"
    c = base_config()
    c.seed = 0
    c.data.name = "lm1b"
    c.data.seq_len = 35
    c.data.vocab_size = 32768
    c.data.tfds_data_dir = ""

    large = arg == "large"
    c.model.name = "regularized_language_model"
    c.model.cell = "lstm"
    c.model.embed_features = 1500 if large else 650
    c.model.hidden_features = 1500 if large else 650
    c.model.num_layers = 2
    c.model.tie_embeddings = arg == "awd"
    drop = 0.65 if large else 0.5
    reg = Regularization(input_dropout=drop, hidden_dropout=drop, output_dropout=drop)
    if arg == "awd":
        reg = Regularization.awd_lstm()
    c.model.regularization = reg.to_dict()

    c.optim.optimizer = "sgd"
    c.optim.momentum = 0.0
    c.optim.lr = 1.0
    c.optim.clip_norm = 5.0
    c.optim.schedule = "step"
    c.optim.decay_every = PTB_EPOCH_STEPS
    c.optim.decay_factor = 1 / 1.2
    c.optim.warmup_steps = 0

    c.train.steps = 39 * PTB_EPOCH_STEPS
    c.train.batch_size = 20
    c.train.log_every = 200
    c.train.eval_every = PTB_EPOCH_STEPS
    c.train.checkpoint_every = PTB_EPOCH_STEPS
    c.eval.max_batches = 500

    if arg == "awd":
        c.optim.optimizer = "nt_asgd"
        c.optim.lr = 30.0
        c.optim.clip_norm = 0.25
        c.optim.weight_decay = 1.2e-6
        c.optim.nonmono = 5
        c.optim.schedule = "constant"
    elif arg == "small":
        c.model.embed_features = 16
        c.model.hidden_features = 16
        c.model.num_layers = 1
        c.data.name = "austen"
        del c.data["vocab_size"]  # lm1b's option; austen's word vocabulary is max_vocab
        c.data.level = "word"
        c.data.max_vocab = 256
        c.data.seq_len = 4  # the tests read 24 mock examples of a few words each
        c.train.steps = 4
        c.train.batch_size = 8  # divisible by the 8 simulated devices of the tests
        c.train.log_every = 2
        c.train.eval_every = 0
        c.train.checkpoint_every = 4
        c.eval.max_batches = 2
    if generation is not None:
        tpu_slices.apply(c, generation, TPU_BATCH_PER_CHIP)
        epoch = round(PTB_EPOCH_STEPS * 20 / c.train.batch_size)
        c.optim.decay_every = epoch
        settings.train_steps(c, 39 * epoch, eval_every=epoch, checkpoint_every=epoch)
    return lock(c)
