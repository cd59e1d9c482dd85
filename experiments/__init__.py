"""rnnlab's experiments: one config file per experiment (``get_config(arg)``) and the
results table (``python -m experiments.results``, see experiments/README.md)."""
