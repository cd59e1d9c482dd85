"""``python -m experiments.results``: reruns rows and rebuilds experiments/README.md (run.py)."""

import sys

from experiments.results.run import main

sys.exit(main())
