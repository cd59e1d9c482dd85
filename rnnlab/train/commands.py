"""``rnnlab train | eval | sample | plot``: the training engine's subcommands."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from rnnlab.train import config as cfg_lib
from rnnlab.train import files

CONFIG_FILE = "config.json"


def _duration(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    return f"{m}m{s:02d}s" if m else f"{s}s"


def load_config(args: argparse.Namespace) -> cfg_lib.ConfigDict:
    """From ``--config`` (with overrides), else the workdir's saved ``config.json``."""
    saved = files.join(args.workdir, CONFIG_FILE)
    if getattr(args, "config", None):
        config = cfg_lib.load(args.config)
    elif files.exists(saved):
        config = cfg_lib.from_dict(files.read_json(saved))
    else:
        raise cfg_lib.ConfigError(
            "config", f"give --config experiments/<file>.py[:variant] ({saved} does not exist)"
        )
    return cfg_lib.override(config, getattr(args, "overrides", []))


def _headline(summary: dict[str, Any], split: str) -> str:
    final = summary["final"].get(split) or {}
    best = summary["best"]
    order = ("bpc", "perplexity", "accuracy", "mse", "loss")
    key = next((k for k in order if k in final), None)
    if key is None:
        return "no evaluation"
    line = f"{split} {key} {final[key]:.4f} at step {summary['steps']}"
    if best.get("value") is not None:
        line += f" (best {best['metric']} {best['value']:.4f} at step {best['step']})"
    return line


def start_processes(args: argparse.Namespace) -> None:
    """Joins a multi-process run (``--coordinator`` etc. or the environment; no-op alone).

    Must come before anything touches a device; see ``rnnlab.parallel.initialize``.
    """
    from rnnlab import parallel

    parallel.initialize(
        getattr(args, "coordinator", None),
        getattr(args, "num_processes", None),
        getattr(args, "process_id", None),
    )


def _is_main() -> bool:
    import jax

    return jax.process_index() == 0


def cmd_train(args: argparse.Namespace) -> int:
    from rnnlab.diagnose import hooks_from_config
    from rnnlab.train.loop import train

    start_processes(args)
    config = load_config(args)
    # config.diagnostics.every > 0 logs ||dL/dh_t|| during training (docs/gradients.md).
    summary = train(config, args.workdir, hooks=hooks_from_config(config, args.workdir))
    if not _is_main():  # process 0 reports for the run
        return 0
    split = config.eval.split
    print(
        f"{summary['stop_reason']}: {summary['steps']} steps, {_duration(summary['wall_time_s'])}"
    )
    if summary["stop_reason"] == "preempted":
        return 0
    print(_headline(summary, split))
    print(f"plots: {summary['plots']}")
    if "sample" in summary:
        print("sample:")
        print(summary["sample"])
    return 0


def _run_and_state(args: argparse.Namespace):
    from rnnlab.train.loop import Run

    start_processes(args)
    config = load_config(args)
    run = Run(config, args.workdir)
    which = args.checkpoint
    if which == "best":
        step = run.checkpoints.best_step() or run.checkpoints.latest_step()
    elif which == "latest":
        step = run.checkpoints.latest_step()
    else:
        step = int(which)
    if step is None:
        raise FileNotFoundError(f"no checkpoint in {args.workdir}/checkpoints")
    state, _ = run.restore(step)
    return run, state, step


def cmd_eval(args: argparse.Namespace) -> int:
    run, state, step = _run_and_state(args)
    results = run.evaluate(state, args.split)
    results = {"step": step, "split": args.split, **results}
    if run.main:
        files.write_json(files.join(args.workdir, f"eval_{args.split}.json"), results)
        print(json.dumps(results, indent=2, sort_keys=True))
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    from rnnlab.train.sampling import sample_text

    run, state, step = _run_and_state(args)
    if run.task.name != "lm":
        raise ValueError(f"sample needs a language model, this run's task is {run.task.name!r}")
    from rnnlab import parallel

    # Gathering parameters sharded across hosts is a collective: every process joins.
    params, rest = parallel.to_host((state.params, state.rest))
    if run.main:
        text = sample_text(
            run,
            state.replace(params=params, rest=rest),
            prompt=args.prompt,
            length=args.length,
            temperature=args.temperature,
            top_k=args.top_k,
            top_p=args.top_p,
            num=args.num,
            seed=args.seed,
        )
        print(text)
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from rnnlab.train.plots import plot_workdir

    if not files.is_dir(args.workdir):
        raise FileNotFoundError(f"workdir {args.workdir} does not exist")
    for path in plot_workdir(args.workdir):
        print(path)
    return 0


def process_args(p: argparse.ArgumentParser) -> None:
    """Flags of a multi-process run on GPU or CPU hosts (TPU VMs find their peers alone)."""
    g = p.add_argument_group(
        "multi-process runs",
        "Every process runs the same command with its own --process-id. The environment "
        "variables RNNLAB_COORDINATOR, RNNLAB_NUM_PROCESSES and RNNLAB_PROCESS_ID (or JAX's "
        "JAX_*) do the same. Not needed on Cloud TPU VMs.",
    )
    g.add_argument("--coordinator", default=None, help="host:port of process 0")
    g.add_argument("--num-processes", dest="num_processes", type=int, default=None)
    g.add_argument("--process-id", dest="process_id", type=int, default=None)


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Adds ``train``, ``eval``, ``sample`` and ``plot`` to the ``rnnlab`` command."""
    p = sub.add_parser(
        "train",
        help="train (or resume) an experiment",
        description="Trains an experiment; rerun on the same workdir to resume. Override any "
        "config key with --config.KEY=VALUE.",
    )
    p.add_argument("--config", help="experiments/<file>.py[:variant] (default: the workdir's)")
    p.add_argument("--workdir", required=True)
    process_args(p)
    p.set_defaults(func=cmd_train, accepts_overrides=True)

    def checkpoint_args(q):
        q.add_argument("--workdir", required=True)
        process_args(q)
        q.add_argument(
            "--checkpoint", default="best", help="best (default), latest or a step number"
        )
        q.set_defaults(accepts_overrides=True)

    p = sub.add_parser("eval", help="evaluate a checkpoint on a split")
    checkpoint_args(p)
    p.add_argument("--split", default="validation", help="train, validation or test")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("sample", help="generate text from a language model")
    checkpoint_args(p)
    p.add_argument("--prompt", default=None)
    p.add_argument("--length", type=int, default=None)
    p.add_argument("--temperature", type=float, default=None, help="0 decodes greedily")
    p.add_argument("--top-k", dest="top_k", type=int, default=None)
    p.add_argument("--top-p", dest="top_p", type=float, default=None)
    p.add_argument("--num", type=int, default=None, help="number of samples")
    p.add_argument("--seed", type=int, default=None)
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("plot", help="write learning-curve PNGs into <workdir>/plots")
    p.add_argument("--workdir", required=True)
    p.set_defaults(func=cmd_plot)


if __name__ == "__main__":  # pragma: no cover
    from rnnlab.cli import main

    sys.exit(main())
