"""``python -m sisock.hub``: same as ``sisock hub``."""

from sisock.cli.main import main

raise SystemExit(main(["hub"]))
