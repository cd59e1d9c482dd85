"""``python -m rnnlab.cli``: the ``rnnlab`` command without the console script."""

import sys

from rnnlab.cli import main

sys.exit(main())
