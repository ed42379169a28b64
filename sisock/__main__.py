"""``python -m sisock``: same as the ``sisock`` command."""

import sys

from sisock.cli.main import main

sys.exit(main())
