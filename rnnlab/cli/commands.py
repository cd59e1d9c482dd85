"""``rnnlab train | eval | sample | plot | list``: the training engine's subcommands."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from rnnlab.cli import catalog
from rnnlab.cli.plugins import load_callback, load_logger
from rnnlab.cli.workdir import checkpoint_arg, data_guard, load_config, pick_step
from rnnlab.train import config as cfg_lib
from rnnlab.train import files, record


def _duration(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    return f"{m}m{s:02d}s" if m else f"{s}s"


def _number(value: float) -> str:
    from rnnlab.train.progress import number

    return number(value)


def _headline(summary: dict[str, Any], split: str) -> str:
    final = summary["final"].get(split) or {}
    best = summary["best"]
    order = ("bpc", "perplexity", "accuracy", "mse", "loss")
    key = next((k for k in order if k in final), None)
    if key is None:
        return "no evaluation"
    line = f"{split} {key} {_number(final[key])} at step {summary['steps']}"
    if best.get("value") is not None:
        line += f" (best {best['metric']} {_number(best['value'])} at step {best['step']})"
    return line


def _translations(summary: dict[str, Any]) -> list[dict[str, str]]:
    """The decoded examples of a translator's report (other reports' ``examples`` is a
    count)."""
    examples = (summary.get("report") or {}).get("examples")
    if not isinstance(examples, list):
        return []
    return [e for e in examples if isinstance(e, dict) and "prediction" in e]


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


def train_config(args: argparse.Namespace) -> cfg_lib.ConfigDict:
    """The config ``rnnlab train`` runs: loaded, overridden and, with ``--extend N``,
    extended over the workdir's saved run."""
    config = load_config(args)
    if args.extend is None:
        return config
    saved = record.saved_config(args.workdir)
    if saved is None:
        raise cfg_lib.ConfigError(
            "train.steps", f"--extend needs a run to extend; {args.workdir} has no config.json"
        )
    config, text = record.extended(saved, config, args.extend, schedule=args.extend_schedule)
    if _is_main():
        print(text, file=sys.stderr)
    return config


def cmd_train(args: argparse.Namespace) -> int:
    from rnnlab.cli.streams import detachable

    with detachable():  # training outlives its terminal (rnnlab.cli.streams)
        return _train(args)


def _train(args: argparse.Namespace) -> int:
    from rnnlab.cli.diagnose import hooks_from_config
    from rnnlab.train.loop import train

    start_processes(args)
    config = train_config(args)
    if args.dry_run:
        return dry_run(config, args.workdir)
    loggers = [load_logger(spec) for spec in args.logger]
    callbacks = [load_callback(spec) for spec in args.callback]
    # config.diagnostics.every > 0 logs ||dL/dh_t|| during training (docs/gradients.md).
    summary = train(
        config,
        args.workdir,
        hooks=hooks_from_config(config, args.workdir),
        loggers=loggers,
        callbacks=callbacks,
        restart=args.restart,
    )
    if not _is_main():  # process 0 reports for the run
        return 0
    split = config.eval.split
    if summary.get("already_finished"):
        print(
            f"already finished: the run in {args.workdir} ended at step {summary['steps']} "
            f"({summary['stop_reason']}); nothing trained. --extend N trains it N steps "
            "further, --restart starts it over."
        )
    else:
        print(
            f"{summary['stop_reason']}: {summary['steps']} steps, "
            f"{_duration(summary['wall_time_s'])}"
        )
    if summary["stop_reason"] == "interrupted":
        return 130
    if summary["stop_reason"] == "preempted":
        return 0
    print(_headline(summary, split))
    print(f"plots: {summary['plots']}")
    if "sample" in summary:
        print("sample:")
        print(summary["sample"])
    for example in _translations(summary)[:3]:
        print(
            f"source {example['source']!r} -> {example['prediction']!r} "
            f"(reference {example['reference']!r})"
        )
    if summary.get("headline"):  # the run's result, last (rnnlab.tasks.headline)
        print(summary["headline"])
    return 0


def parameter_table(params: Any) -> list[tuple[str, str, int]]:
    """``(layer, shapes, parameters)`` per module of a parameter tree (the parent path of
    each array), in tree order, like ``nnx.tabulate``'s parameter column."""
    import jax
    import numpy as np

    from rnnlab.parallel import path_to_str as path_str

    rows: dict[str, list[Any]] = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        name = path_str(path)
        layer = name.rsplit("/", 1)[0] if "/" in name else name
        row = rows.setdefault(layer, [[], 0])
        row[0].append(str(tuple(leaf.shape)))
        row[1] += int(np.prod(leaf.shape))
    return [(layer, " ".join(shapes), n) for layer, (shapes, n) in rows.items()]


def dry_run(config: cfg_lib.ConfigDict, workdir: str) -> int:
    """Prints the resolved config and the parameters per layer; trains nothing, writes
    nothing to the workdir, and prepares no dataset in the data dir (one not yet prepared
    is prepared in a temporary folder, then deleted)."""
    from rnnlab.data.builders import prepare_elsewhere
    from rnnlab.train.loop import Run

    with prepare_elsewhere():
        run = Run(config, workdir)  # validates; opens no checkpoint
        params = run.abstract.params
    print(json.dumps(cfg_lib.to_dict(run.config), indent=2, sort_keys=True))
    rows = parameter_table(params)
    width = max([len("layer")] + [len(r[0]) for r in rows])
    swidth = max([len("shapes")] + [len(r[1]) for r in rows])
    print(f"\n{'layer':<{width}}  {'shapes':<{swidth}}  {'parameters':>12}")
    for layer, shapes, n in rows:
        print(f"{layer:<{width}}  {shapes:<{swidth}}  {n:>12,}")
    total = sum(r[2] for r in rows)
    print(f"{'total':<{width}}  {'':<{swidth}}  {total:>12,}")
    print(f"dry run: nothing trained, nothing written to {workdir}")
    return 0


def _run_and_state(args: argparse.Namespace):
    from rnnlab.cli.workdir import has_checkpoints
    from rnnlab.train import readers  # orbax: only where checkpoints are read
    from rnnlab.train.loop import Run

    start_processes(args)
    config = load_config(args)
    if not has_checkpoints(args.workdir):
        raise FileNotFoundError(f"no checkpoint in {files.join(args.workdir, 'checkpoints')}")
    run = Run(config, args.workdir, read_only=True)
    # A run training in the same workdir may rotate a step away while orbax lists them.
    pick_step(readers.opened(lambda: run.checkpoints), args.checkpoint, args.workdir)
    # A run training in the same workdir may rotate the chosen step away while it is read.
    step, (state, _) = readers.restore(
        run.checkpoints,
        args.checkpoint,
        run.restore,
        note=lambda text: print(f"rnnlab: note: {text}", file=sys.stderr, flush=True),
    )
    return run, state, step


def cmd_eval(args: argparse.Namespace) -> int:
    with data_guard(args):
        run, state, step = _run_and_state(args)
        results = run.evaluate(state, args.split)
    results = {"step": step, "split": args.split, **results}
    if run.main:
        # Printed first: a workdir that cannot be written (read-only, someone else's) must
        # not lose the results it took the evaluation to compute.
        print(json.dumps(results, indent=2, sort_keys=True), flush=True)
        path = files.join(args.workdir, f"eval_{args.split}.json")
        try:
            files.write_json(path, results)
        except OSError as e:
            print(f"rnnlab: warning: results not saved to {path}: {e}", file=sys.stderr)
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    from rnnlab.tasks.sampling import sample_text

    with data_guard(args):
        run, state, step = _run_and_state(args)
    if run.task.name == "seq2seq":
        raise cfg_lib.ConfigError(
            "data",
            "sample generates text from a language model; this run translates: `rnnlab train "
            f"--workdir {args.workdir}` prints its decoded examples (also in summary.json "
            f"under report.examples) and `rnnlab eval --workdir {args.workdir} --split test` "
            "scores its translations",
        )
    if run.task.name != "lm":
        raise cfg_lib.ConfigError(
            "data", f"sample needs a language model, this run's task is {run.task.name!r}"
        )
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


def cmd_list(args: argparse.Namespace) -> int:
    entries = catalog.experiments(args.dir)
    if not entries:
        raise FileNotFoundError(f"no experiment files (get_config) in {args.dir}")
    print(catalog.render(entries, args.dir))
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


def positive_int(text: str) -> int:
    """argparse type of a count: an integer >= 1 (argparse exits with status 2 otherwise)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


OVERRIDES_HELP = " Override any config key with --config.KEY=VALUE."


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Adds ``train``, ``eval``, ``sample``, ``plot`` and ``list`` to the ``rnnlab`` command."""
    p = sub.add_parser(
        "train",
        help="train (or resume) an experiment",
        description="Trains an experiment; rerun on the same workdir to resume." + OVERRIDES_HELP,
    )
    p.add_argument(
        "--config",
        help="NAME[:variant] of a shipped experiment (rnnlab list), or PATH.py[:variant] of "
        "one's own (default: the workdir's)",
    )
    p.add_argument("--workdir", required=True)
    p.add_argument(
        "--extend",
        type=int,
        default=None,
        metavar="N",
        help="train the workdir's run N steps further than its train.steps",
    )
    p.add_argument(
        "--extend-schedule",
        dest="extend_schedule",
        choices=("stretch", "keep"),
        default="stretch",
        help="with --extend: stretch the schedule (optim.total_steps) to the new last step "
        "(default), or keep it, so the new steps train at its final rate",
    )
    p.add_argument(
        "--restart",
        action="store_true",
        help="start over from step 0 in a workdir that holds a run (its files move to "
        "previous/<time>/; nothing is deleted)",
    )
    p.add_argument(
        "--dry-run",
        dest="dry_run",
        action="store_true",
        help="print the resolved config and the parameters per layer, then stop",
    )
    p.add_argument(
        "--logger",
        action="append",
        default=[],
        metavar="MODULE:FUNCTION",
        help="call FUNCTION(step, split, metrics) with every metric record (repeatable)",
    )
    p.add_argument(
        "--callback",
        action="append",
        default=[],
        metavar="MODULE:NAME",
        help="an rnnlab.train.Callback (class or instance) called through the run; it may "
        "stop it or ask for a checkpoint (repeatable)",
    )
    process_args(p)
    p.set_defaults(func=cmd_train, accepts_overrides=True)

    def checkpoint_args(q):
        q.add_argument("--workdir", required=True)
        process_args(q)
        q.add_argument(
            "--checkpoint",
            default="best",
            type=checkpoint_arg,
            help="best (default), latest or a step number",
        )
        q.set_defaults(accepts_overrides=True)

    p = sub.add_parser(
        "eval",
        help="evaluate a checkpoint on a split",
        description="Evaluates a checkpoint of the workdir's run with its saved config."
        + OVERRIDES_HELP
        + " (e.g. --config.eval.max_batches=10)",
    )
    checkpoint_args(p)
    p.add_argument("--split", default="validation", help="train, validation or test")
    # A model registered by its experiment file (experiments/mnist1d.py:flax_gru) is known
    # to a run only when that file is loaded again.
    p.add_argument(
        "--config",
        help="NAME[:variant] or PATH.py[:variant]: the run's experiment, loaded again for a "
        "model that file registers (default: the workdir's config.json)",
    )
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser(
        "sample",
        help="generate text from a language model",
        description="Samples from a checkpoint of the workdir's language model."
        + OVERRIDES_HELP
        + " (e.g. --config.sample.temperature=0.5)",
    )
    checkpoint_args(p)
    p.add_argument("--prompt", default=None)
    p.add_argument("--length", type=positive_int, default=None)
    p.add_argument("--temperature", type=float, default=None, help="0 decodes greedily")
    p.add_argument("--top-k", dest="top_k", type=int, default=None)
    p.add_argument("--top-p", dest="top_p", type=float, default=None)
    p.add_argument("--num", type=positive_int, default=None, help="number of samples")
    p.add_argument("--seed", type=int, default=None)
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("plot", help="write learning-curve PNGs into <workdir>/plots")
    p.add_argument("--workdir", required=True)
    p.set_defaults(func=cmd_plot)

    p = sub.add_parser(
        "list",
        help="list the experiments and their variants",
        description="Lists experiments/*.py with the variants their docstrings name.",
    )
    p.add_argument("--dir", default=catalog.default_dir(), help="experiments folder")
    p.set_defaults(func=cmd_list)
