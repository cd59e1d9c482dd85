"""What the end-of-run reports share: the report split, predictions, saving a figure.

A task's ``report(run, state, workdir) -> dict`` runs after training with the best
checkpoint's state on every process (evaluation gathers across processes); only the main
one writes figures. ``run`` is the training engine's run object; the reports use only
``run.config``, ``run.info``, ``run.graphdef``, ``run.evaluate(state, split)``,
``run.batches(split)`` (this process's host batches of a split, in order) and
``run.to_global(batch)`` (a host batch as global arrays on the run's mesh).
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import jax
import numpy as np
from flax import nnx

from rnnlab import parallel


def option(config: Any, group: str, key: str, default: Any) -> Any:
    node = config.get(group) if hasattr(config, "get") else None
    if node is None:
        return default
    value = node.get(key, default)
    return default if value is None else value


def report_split(run) -> str:
    return str(option(run.config, "report", "split", "test"))


def predictions(run, state, split: str, keys: tuple[str, ...]) -> Iterator[tuple[dict, dict]]:
    """``(host batch, host outputs)`` for every batch of ``split``, padding rows removed;
    outputs hold ``"outputs"`` and the named ``aux`` entries."""
    graphdef = run.graphdef

    @jax.jit
    def forward(params, rest, batch):
        outputs, aux = nnx.merge(graphdef, params, rest)(batch, train=False)
        return {"outputs": outputs, **{k: aux[k] for k in keys}}

    for batch in run.batches(split):
        out = parallel.to_host(forward(state.params, state.rest, run.to_global(batch)))
        keep = np.asarray(batch["weights"]).reshape(len(batch["weights"]), -1)[:, 0] > 0
        yield (
            {k: np.asarray(v)[keep] for k, v in batch.items()},
            {k: np.asarray(v)[keep] for k, v in out.items()},
        )


def save_figure(fig, workdir: str, name: str) -> str | None:
    """Writes ``fig`` to ``<workdir>/plots/<name>`` from the main process (gs:// allowed)."""
    import matplotlib.pyplot as plt
    from etils import epath

    path = None
    if jax.process_index() == 0:
        png = io.BytesIO()
        fig.savefig(png, format="png", dpi=100)
        plots = epath.Path(workdir) / "plots"
        plots.mkdir(parents=True, exist_ok=True)
        (plots / name).write_bytes(png.getvalue())
        path = str(plots / name)
    plt.close(fig)
    return path


def as_dict(cfg: Any) -> dict[str, Any]:
    """A ConfigDict, mapping or ``None`` as a plain dict."""
    if cfg is None:
        return {}
    return cfg.to_dict() if hasattr(cfg, "to_dict") else dict(cfg)
