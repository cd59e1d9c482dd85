"""Next-frame prediction on moving digits with a ConvLSTM encoder-forecaster.

Data (``moving_digits``, generated locally by rnnlab.data.generated): scikit-learn's
8x8 handwritten digits bouncing inside a square canvas, Moving-MNIST style (Srivastava et
al. 2015); the model sees ``seq_len`` frames and predicts the next ``horizon``. Digits of
the validation and test sequences are images the training sequences never use.

Model (Shi et al. 2015): frames cut into 2x2 patches, a stacked ConvLSTM encoder, a
stacked ConvLSTM forecaster started from the encoder's states and run without input, a
1x1 convolution and a sigmoid per pixel; per-pixel binary cross-entropy loss (as in Shi et
al.), with the mean squared error and SSIM (Wang et al. 2004) as metrics. At the end the
run writes ``plots/frames.png`` (observed frames, the true continuation and the
prediction, for two test sequences).

Commands::

    rnnlab train --config experiments/video.py --workdir workdirs/video
    rnnlab train --config experiments/video.py:large --workdir workdirs/video-large

Variants: ``""`` (24x24 canvas, two digits, 10 frames in and 10 out, two ConvLSTM layers of
16 channels, kernel 3: sized for a CPU), ``large`` (a 64x64 canvas with digits scaled 3x,
three layers of 64 channels, kernel 5, 4x4 patches, as in Shi et al.; for an accelerator),
``small`` (the CI smoke run).

Hardware: 2 cores of an Intel Xeon (Sapphire Rapids), one JAX CPU device.

Result (default, measured on the development machine while it was shared with other jobs;
400 s of CPU, 21 minutes of wall time): test MSE per pixel 0.040 against 0.081 for repeating
the last observed frame, 0.029 at the first predicted frame and 0.045 at the tenth, SSIM
0.13. The predictions are blurred blobs in the right place for the first frames that fade
into a mean blob further out: this CPU-sized model (16 channels, 3,000 steps) is far from
converged, and the loss was still falling. ``large`` is the configuration for sharp
predictions. ``small`` (one digit on a 16x16 canvas, 60 steps) must beat repeating the
last observed frame on validation MSE in CI. Measured numbers go to experiments/README.md.
"""

from __future__ import annotations

import ml_collections

from experiments import settings
from rnnlab.train.config import base_config, lock

VARIANTS = ("", "large", "small")


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    """One of :data:`VARIANTS`."""
    arg = settings.variant("video", arg, VARIANTS)
    c = base_config()
    c.seed = 0
    c.data.name = "moving_digits"
    c.data.canvas = 24
    c.data.digit_scale = 1
    c.data.num_digits = 2
    c.data.seq_len = 10
    c.data.horizon = 10
    c.data.eval_examples = 500

    c.model.name = "video_predictor"
    c.model.hidden_features = 16
    c.model.num_layers = 2
    c.model.kernel_size = 3
    c.model.patch_size = 2
    c.model.loss = "bce"  # per-pixel cross-entropy, as Shi et al.; "mse" is the alternative

    settings.adam_cosine(c, warmup_steps=100, lr=2e-3)

    settings.train_steps(
        c, 3000, batch_size=16, log_every=100, eval_every=500, checkpoint_every=500
    )
    c.train.stateful = False
    c.eval.batch_size = 64

    # Read by the end-of-run report (rnnlab.tasks).
    c.report = ml_collections.ConfigDict({"split": "test"})

    if arg == "large":
        c.data.canvas = 64
        c.data.digit_scale = 3
        c.model.hidden_features = 64
        c.model.num_layers = 3
        c.model.kernel_size = 5
        c.model.patch_size = 4
        c.optim.lr = 1e-3
        settings.train_steps(c, 50_000, eval_every=2500, checkpoint_every=2500)
    elif arg == "small":
        c.data.canvas = 16
        c.data.num_digits = 1
        c.data.seq_len = 4
        c.data.horizon = 2
        c.data.eval_examples = 32
        c.model.hidden_features = 8
        c.model.num_layers = 1
        c.optim.lr = 1e-2
        c.optim.warmup_steps = 10
        settings.train_steps(c, 60, batch_size=8, log_every=20, eval_every=60, checkpoint_every=60)
        c.eval.batch_size = 16
    return lock(c)
