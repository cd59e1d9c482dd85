"""The results table's machinery and records: the rows (``rows.py``), reading a run back and
writing the Markdown (``table.py``), the runner (``run.py``, ``python -m experiments.results``),
figures across rows (``curves.py``); the recorded figures of every row (``records.json``), the
resolved config of each recorded run (``configs/``) and the plots (``figures/``). The table
itself is ``experiments/README.md``; the experiments' configs are ``experiments/<name>.py``."""
