"""``hdf5``: a data node serving an HDF5 archive directory.

``sisock serve hdf5 --name N --archive DIR`` serves the directory with
:class:`sisock.archive.core.ArchiveCore` (see there for how queries are
answered and limited).  This module holds the command's arguments and
:func:`build`.

Limits: a reply that travels as one message is capped at
``--max-samples`` values (default 2 000 000, which keeps JSON replies
under the router's message limit); a streamed binary reply (progressive
results, see :mod:`sisock.core.wire`) at ``--max-samples-streamed`` (default
200 000 000). Beyond them the caller gets ``{base}.error.too_much_data``
with a ``min_stride`` suggestion.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from typing import Any

from sisock.core.plan import Plan
from sisock.site.settings import Settings

HELP = "serve an HDF5 archive directory"
REACTOR = "default"

__all__ = ["ArchiveCore", "HELP", "REACTOR", "add_arguments", "build"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``sisock serve hdf5``."""
    parser.add_argument("--name", default="archive", help="data node name (default archive)")
    parser.add_argument("--archive", type=Path, required=True, help="archive directory")
    parser.add_argument("--description", default=None,
                        help="description for consumers (default: 'HDF5 archive DIR')")
    parser.add_argument("--max-samples", type=int, default=2_000_000,
                        help="values allowed in one-message replies (default 2e6)")
    parser.add_argument("--max-samples-streamed", type=int, default=200_000_000,
                        help="values allowed in streamed binary replies (default 2e8)")
    parser.add_argument("--replica", action="store_true",
                        help="serve --name together with other replicas of the same archive "
                             "(every replica needs this flag and the same credentials)")


def build(args: argparse.Namespace, settings: Settings) -> Plan:
    """The archive core for parsed arguments; it loads its catalog in a thread at start."""
    if not args.archive.is_dir():
        raise SystemExit(f"sisock serve hdf5: --archive {args.archive} is not a directory")
    from sisock.archive.core import ArchiveCore  # h5py only when serving

    core = ArchiveCore(args.archive, args.name,
                       args.description or f"HDF5 archive {args.archive.resolve()}",
                       args.max_samples, args.max_samples_streamed)
    return Plan(core, warm=[core.warm], replica=args.replica)


def __getattr__(name: str) -> Any:
    if name == "ArchiveCore":  # kept importable from here, without importing h5py early
        from sisock.archive.core import ArchiveCore

        return ArchiveCore
    raise AttributeError(name)
