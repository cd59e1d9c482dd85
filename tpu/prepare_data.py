"""Prepares the data of one experiment in ``$RNNLAB_DATA_DIR`` (run on worker 0 by
tpu/data.sh, which then copies the result to every worker).

    python tpu/prepare_data.py EXPERIMENT [--config.KEY=VALUE ...]

Only ``--config.*`` overrides are read; other training arguments are ignored, so the
command line of ``tpu/run.sh`` can be passed as it is. Prints whether anything was written:
``prepared`` (new files under the data directory) or ``already prepared``.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def main(argv: list[str]) -> int:
    from rnnlab.data.config import DATA_DIR_ENV
    from rnnlab.train import config as cfg_lib

    rest, overrides = cfg_lib.split_argv(argv)
    spec = next((a for a in rest if not a.startswith("-")), None)
    if spec is None:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    if not os.environ.get(DATA_DIR_ENV):
        print(f"error: {DATA_DIR_ENV} is not set; tpu/data.sh sets it", file=sys.stderr)
        return 2
    root = Path(os.environ[DATA_DIR_ENV]).expanduser()
    root.mkdir(parents=True, exist_ok=True)
    config = cfg_lib.override(cfg_lib.load(spec), overrides)

    import rnnlab.data

    before, start = _files(root), time.perf_counter()
    info = rnnlab.data.info(config.data)
    added = len(_files(root) - before)
    took = time.perf_counter() - start
    what = f"prepared ({added} new files)" if added else "already prepared"
    print(f"{spec}: data {info['name']!r} in {root}: {what}, {took:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
