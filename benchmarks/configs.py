"""Benchmark configurations, implementations and FLOP counts.

Configurations A, B and C are the baselines of the project's performance notes; ``long`` is
the long-sequence case (time 8,192) that must train in bounded memory. Training tokens are
``batch * time`` per step; a training step is forward, backward and an Adam update of one
recurrent layer under the loss ``mean(y^2)``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Config:
    """One benchmark shape: ``batch``, ``time``, ``input`` and ``hidden`` sizes."""

    name: str
    batch: int
    time: int
    input: int
    hidden: int

    @property
    def tokens(self) -> int:
        return self.batch * self.time

    def as_dict(self) -> dict:
        return asdict(self)


CONFIGS = {
    "A": Config("A", 32, 128, 128, 256),
    "B": Config("B", 64, 256, 256, 512),
    "C": Config("C", 16, 1024, 64, 128),
    "long": Config("long", 16, 8192, 128, 256),
}

GATES = {"lstm": 4, "gru": 3}


def flops(cell: str, config: Config, mode: str) -> float:
    """Matmul FLOPs of one step: ``2 B T G H (I + H)`` forward, three times that to train.

    ``G`` is the number of gates (4 for the LSTM, 3 for the GRU). Elementwise work and the
    optimizer are not counted, so the figure is comparable with a matmul peak.
    """
    c = config
    forward = 2.0 * c.batch * c.time * GATES[cell] * c.hidden * (c.input + c.hidden)
    return 3.0 * forward if mode == "train" else forward


# name -> (framework, description). Workers in benchmarks/worker.py build each of them.
IMPLEMENTATIONS = {
    "torch": ("torch", "PyTorch nn.LSTM (oneDNN on CPU) / nn.GRU (ATen cell loop)"),
    "torch-passive": (
        "torch",
        "the same with OMP_WAIT_POLICY=PASSIVE: idle OpenMP threads sleep instead of spinning, "
        "which keeps PyTorch usable when other processes load the cores",
    ),
    "flax": ("jax", "Flax nnx.RNN + OptimizedLSTMCell / GRUCell"),
    "rnnlab-scan": ("jax", "rnnlab RNN, scan path (autodiff through lax.scan)"),
    "rnnlab-fused": ("jax", "rnnlab RNN, fused whole-sequence custom_vjp"),
    "rnnlab-kernel": (
        "jax",
        "rnnlab fused with its time loops as the compiled CPU kernels (rnnlab-kernels, "
        "implementation='kernel'; what 'auto' trains with on CPU where they are installed); "
        "its forward column runs the kernel too (RNNLAB_KERNEL_FORWARD=1), where 'auto' runs "
        "the fused path's XLA loops",
    ),
    "rnnlab-fused-remat": ("jax", "rnnlab fused, gates recomputed in the backward pass"),
    "rnnlab-fused-bf16": ("jax", "rnnlab fused, bfloat16 matmuls, float32 carries"),
    "rnnlab-scan-remat": ("jax", "rnnlab scan path, remat='full'"),
}
