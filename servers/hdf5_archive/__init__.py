"""``hdf5``: a data node serving an HDF5 archive directory.

``sisock serve hdf5 --name N --archive DIR`` serves the directory with
:class:`sisock.archive.core.ArchiveCore` (see there for how queries are
answered and limited).  This module holds the command's arguments and
:func:`build`.

Several archives in one process: repeat ``--archive``, with one
``--name`` per archive (the i-th ``--name`` names the i-th ``--archive``)::

    sisock serve hdf5 --archive /data/a1 --name a1 --archive /data/a2 --name a2

Each becomes its own data node (own session, name and threads; see
:mod:`sisock.wamp.host`); they share the interpreter and its libraries,
which is most of a lone node's memory.

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
    parser.add_argument(
        "--archive",
        type=Path,
        action="append",
        required=True,
        metavar="DIR",
        help="archive directory; repeat it to serve several archives from this one process, each as its own node",
    )
    parser.add_argument(
        "--name",
        action="append",
        default=None,
        help="data node name (default archive); with several --archive, one "
        "--name per archive: the i-th --name names the i-th --archive",
    )
    parser.add_argument(
        "--description",
        action="append",
        default=None,
        help="description for consumers (default: 'HDF5 archive DIR'); with "
        "several --archive, none or one per archive, in the same order",
    )
    parser.add_argument(
        "--max-samples", type=int, default=2_000_000, help="values allowed in one-message replies (default 2e6)"
    )
    parser.add_argument(
        "--max-samples-streamed",
        type=int,
        default=200_000_000,
        help="values allowed in streamed binary replies (default 2e8)",
    )
    parser.add_argument(
        "--replica",
        action="store_true",
        help="serve each name together with other replicas of the same archive "
        "(every replica needs this flag and the same credentials)",
    )


def nodes(args: argparse.Namespace) -> list[tuple[str, Path, str | None]]:
    """``(name, directory, description or None)`` of each node the arguments ask for.

    Raises
    ------
    BadArgument
        When names and directories do not pair up, a name or a directory is
        given twice, or a directory does not exist.
    """
    from sisock.core.errors import BadArgument

    archives: list[Path] = args.archive
    names: list[str] = args.name or []
    descriptions: list[str] = args.description or []
    if len(archives) == 1 and len(names) <= 1:
        names = names or ["archive"]
    elif len(names) != len(archives):
        raise BadArgument(
            f"--archive is given {len(archives)} times and --name "
            f"{len(names)} times: give one --name per --archive (the i-th "
            "--name names the i-th --archive)"
        )
    if descriptions and len(descriptions) != len(archives):
        raise BadArgument(
            f"--description is given {len(descriptions)} times for "
            f"{len(archives)} --archive: give none, or one per --archive"
        )
    out: list[tuple[str, Path, str | None]] = []
    seen_names: set[str] = set()
    seen_dirs: dict[Path, str] = {}
    for i, (name, directory) in enumerate(zip(names, archives)):
        if not directory.is_dir():
            raise BadArgument(f"--archive {directory} is not a directory")
        if name in seen_names:
            raise BadArgument(f"--name {name!r} is given twice: every node needs its own name")
        real = directory.resolve()
        if real in seen_dirs:
            # two readers of the same files in one process would share HDF5's file
            # objects, and one refreshing a file being written corrupts the other's reads
            raise BadArgument(
                f"--archive {directory} is given twice (nodes {seen_dirs[real]!r} "
                f"and {name!r}): a process serves a directory once; serve it "
                "under one name, or as a --replica from another process"
            )
        seen_names.add(name)
        seen_dirs[real] = name
        out.append((name, directory, descriptions[i] if descriptions else None))
    return out


def build(args: argparse.Namespace, settings: Settings) -> list[Plan]:
    """One archive core per ``--archive``; each loads its catalog in a thread at start."""
    from sisock.archive.core import ArchiveCore  # h5py only when serving

    plans = []
    for name, directory, description in nodes(args):
        core = ArchiveCore(
            directory,
            name,
            description or f"HDF5 archive {directory.resolve()}",
            args.max_samples,
            args.max_samples_streamed,
        )
        plans.append(Plan(core, warm=[core.warm], replica=args.replica))
    return plans


def __getattr__(name: str) -> Any:
    if name == "ArchiveCore":  # kept importable from here, without importing h5py early
        from sisock.archive.core import ArchiveCore

        return ArchiveCore
    raise AttributeError(name)
