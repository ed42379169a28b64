"""``python -m sisock``: same as the ``sisock`` command."""

import sys

from sisock.cli import main

sys.exit(main())
