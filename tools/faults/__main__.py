"""``python -m tools.faults [--short] [--root DIR] [--seed N]``: runs the fault-injection
suite and prints its table; the exit status is 1 if any scenario failed."""

from __future__ import annotations

import argparse
import sys
import tempfile
import time

from tools.faults import failures, run_suite, table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.faults", description=__doc__)
    parser.add_argument("--short", action="store_true", help="the CI form (fewer faults)")
    parser.add_argument("--root", help="where the runs go (default: a temporary directory)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random kill moments")
    args = parser.parse_args(argv)
    root = args.root or tempfile.mkdtemp(prefix="rnnlab-faults-")
    t = time.monotonic()
    results = run_suite(root, short=args.short, seed=args.seed, log=lambda s: print(s, flush=True))
    form = "short" if args.short else "full"
    print(f"\nfault-injection suite ({form} form, seed {args.seed}, {time.monotonic() - t:.0f} s)")
    print(table(results))
    problems = failures(results)
    if problems:
        print("\n" + problems)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
