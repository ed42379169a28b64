"""``hdf5``: a data node serving an HDF5 archive directory.

``sisock serve hdf5 --name N --archive DIR`` answers ``get_fields`` and
``get_data`` from :class:`~sisock.archive.reader.ArchiveReader`, which picks
up new files as a writer (e.g. the Modbus node) adds them, reads only the
files that overlap a query, and uses the archive's summary levels when
``min_stride`` is large. Queries run in the node's worker threads; one
reader is shared behind a lock (h5py serialises HDF5 calls anyway).

Limits: a reply that travels as one message is capped at
``--max-samples`` values (default 2 000 000, which keeps JSON replies
under the router's message limit); a streamed binary reply (progressive
results, see :mod:`sisock.wire`) at ``--max-samples-streamed`` (default
200 000 000). Beyond them the caller gets ``{base}.error.too_much_data``
with a ``min_stride`` suggestion.
"""

from __future__ import annotations

import argparse
import threading
from pathlib import Path

from sisock.archive.reader import ArchiveReader
from sisock.core import DataCore
from sisock.protocol import Result
from sisock.serve import Plan
from sisock.settings import Settings

HELP = "serve an HDF5 archive directory"
REACTOR = "default"


class ArchiveNode(DataCore):
    """Node core over one archive directory.

    Parameters
    ----------
    directory : pathlib.Path
        The archive directory.
    name, description : str
        Data-node name and description.
    max_samples : int
        Values allowed in a single-message reply.
    max_samples_streamed : int
        Values allowed in a streamed reply.
    """

    def __init__(self, directory: Path, name: str = "archive",
                 description: str = "HDF5 archive", max_samples: int = 2_000_000,
                 max_samples_streamed: int = 200_000_000) -> None:
        self.name = name
        self.description = description
        self.reader = ArchiveReader(directory)
        self.max_samples = max_samples
        self.max_samples_streamed = max_samples_streamed
        self._lock = threading.Lock()

    def warm(self) -> int:
        """Open every file once so the first query is fast; return the timeline count.

        The reader learns each immutable file's spans on first use (about
        1.5 ms per file); the node calls this in a thread at start-up.
        """
        with self._lock:
            return len(self.reader.timelines())

    def get_fields(self, start: float, end: float) -> tuple[dict, dict]:
        """Fields with data in ``[start, end)``."""
        with self._lock:
            return self.reader.fields(start, end)

    def get_data(self, fields, start, end, min_stride=None, method="mean", *,
                 streaming: bool = False) -> Result:
        """Samples of ``fields`` in ``[start, end)``, downsampled if asked."""
        with self._lock:
            return Result.coerce(self.reader.read(fields, start, end, min_stride, method,
                                                  max_samples=self.limit(streaming)))


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
    core = ArchiveNode(args.archive, args.name,
                       args.description or f"HDF5 archive {args.archive.resolve()}",
                       args.max_samples, args.max_samples_streamed)
    return Plan(core, warm=[core.warm], replica=args.replica)
