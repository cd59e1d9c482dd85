"""``rnnlab predict`` and ``rnnlab export``: a trained run used on new data, and carried out."""

from __future__ import annotations

import argparse

from rnnlab.cli.commands import positive_int
from rnnlab.cli.workdir import checkpoint_arg


def _levels(text: str) -> list[float]:
    try:
        levels = [float(q) for q in text.split(",") if q.strip()]
    except ValueError:
        levels = []
    if not levels or not all(0.0 < q < 1.0 for q in levels):
        raise argparse.ArgumentTypeError(f"levels in (0, 1) separated by commas, got {text!r}")
    return levels


def cmd_predict(args: argparse.Namespace) -> int:
    from rnnlab.train.predict import PredictInputError, predict_file

    try:
        done = predict_file(
            args.workdir,
            args.input,
            args.output,
            checkpoint=args.checkpoint,
            batch_size=args.batch_size,
            show_progress=not args.quiet,
            origins=args.origins,
            quantiles=args.quantiles,
        )
    except ValueError as e:  # predict's readers and checks name what is wrong with the input
        raise PredictInputError(str(e)) from e
    what = done.get("unit", "sequences")
    print(f"predicted {done['records']} {what} with step {done['step']}: {done['output']}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    if args.format == "params":
        from rnnlab.train.export import export

        print(f"exported parameters: {export(args.workdir, args.out, args.checkpoint)}")
        return 0
    from rnnlab.train.stablehlo import export_stablehlo

    platforms = [p for p in args.platforms.split(",") if p]
    signature = export_stablehlo(args.workdir, args.out, args.checkpoint, platforms)
    for name, fn in signature["functions"].items():
        print(
            f"{args.out}/{fn['file']}: {name}, time {fn['time']}, platforms "
            f"{','.join(fn['platforms'])}"
            + (f" (not lowered: {', '.join(fn['not_lowered'])})" if fn["not_lowered"] else "")
        )
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Adds ``predict`` and ``export`` to the ``rnnlab`` command."""
    p = sub.add_parser(
        "predict",
        help="predict every sequence of a file with a trained run",
        description="Batch inference: reads --input in the format of the run's data and "
        "writes class probabilities, predicted values, forecasts with quantiles (.csv or "
        ".npz), translations, transcripts or continuations (.tsv, .jsonl or .txt) to --output.",
    )
    p.add_argument("--workdir", required=True)
    p.add_argument(
        "--input",
        required=True,
        help=".npz/.npy arrays, a long .csv/.parquet, a series .csv, pairs, a manifest or prompts",
    )
    p.add_argument("--output", required=True, help=".csv/.npz, or .tsv/.jsonl/.txt for text")
    p.add_argument(
        "--checkpoint", default="best", type=checkpoint_arg, help="best, latest or a step"
    )
    p.add_argument("--batch-size", dest="batch_size", type=positive_int, default=None)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument(
        "--origins",
        choices=("last", "all"),
        default="last",
        help="forecasting: from the end of the series (last) or from every full lookback (all)",
    )
    p.add_argument(
        "--quantiles",
        type=_levels,
        default=None,
        help="forecasting: quantile levels, e.g. 0.05,0.5,0.95 (default: the quantile head's "
        "own, else 0.1,0.5,0.9)",
    )
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser(
        "export",
        help="write a trained model out: parameters, or StableHLO that runs without rnnlab",
        description="--format params: config.json, dataset_info.json and params.npz, read back "
        "with rnnlab.train.export.load. --format stablehlo: jax.export artifacts (forward; a "
        "decoding step for language models; encode, decode_step and greedy translate for "
        "translators) with a signature.json; they need only JAX.",
    )
    p.add_argument("--workdir", required=True)
    p.add_argument("--out", required=True, help="directory to write")
    p.add_argument("--format", choices=("params", "stablehlo"), default="params")
    p.add_argument(
        "--checkpoint", default="best", type=checkpoint_arg, help="best, latest or a step"
    )
    p.add_argument(
        "--platforms",
        default="cpu,cuda,tpu",
        help="stablehlo: platforms to lower for (those that lower are kept; default all three)",
    )
    p.set_defaults(func=cmd_export)
