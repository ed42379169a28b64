"""The ``sisock`` command: sub-commands, the demo, the archive generator and
the server runner. :func:`sisock.cli.main.main` is the console script.
"""
