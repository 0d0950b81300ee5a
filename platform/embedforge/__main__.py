"""``python -m embedforge``: the ``embedforge`` command line where its script is not on ``PATH``."""

import sys

from embedforge.cli import main

sys.exit(main())
