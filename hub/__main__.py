"""``python -m sisock.hub``: same as ``sisock hub``."""

from sisock.cli import main

raise SystemExit(main(["hub"]))
