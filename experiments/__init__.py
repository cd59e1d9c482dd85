"""rnnlab's experiments: one config file per experiment (``get_config(arg)``); the results
table's machinery and records are the ``experiments.results`` package
(``python -m experiments.results``, see experiments/README.md)."""
