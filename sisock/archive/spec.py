"""Field metadata shared by the archive, the data nodes and the Modbus poller.

Also the one table of what a missing value is for each field type
(:func:`missing`), used by the writer to fill fields absent from a batch
and by the reader to fill fields absent from a file.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FIELD_TYPES = ("number", "string", "bool")

#: Per field type: the value standing for "no sample" and the numpy dtype of
#: the values a reader returns.  HDF5 has no missing bool, so a missing bool
#: reads as False (use a number field for a flag that can be unknown).
MISSING_VALUE: dict[str, tuple[object, type]] = {
    "number": (np.nan, np.float64),
    "bool": (False, np.bool_),
    "string": ("", np.str_),
}


def missing(ftype: str, n: int) -> np.ndarray:
    """``n`` missing values of a field type, in the dtype readers return.

    Parameters
    ----------
    ftype : str
        One of :data:`FIELD_TYPES`.
    n : int
        Number of values (0 gives the empty array of the right dtype).
    """
    value, dtype = MISSING_VALUE[ftype]
    return np.full(n, value, dtype=dtype)


@dataclass(frozen=True)
class FieldSpec:
    """Metadata of one field, as reported by ``get_fields``.

    Parameters
    ----------
    type : str
        One of ``"number"``, ``"string"``, ``"bool"`` (the sisock 0.x types).
    units : str or None
        Physical units, or None.
    description : str or None
        Human-readable description, or None.
    """

    type: str = "number"
    units: str | None = None
    description: str | None = None

    def __post_init__(self) -> None:
        if self.type not in FIELD_TYPES:
            raise ValueError(
                f"field type must be one of {FIELD_TYPES}, got {self.type!r}"
            )
