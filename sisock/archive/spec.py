"""Field metadata shared by the archive, the data nodes and the Modbus poller."""

from __future__ import annotations

from dataclasses import dataclass

FIELD_TYPES = ("number", "string", "bool")


@dataclass(frozen=True)
class FieldSpec:
    """Metadata of one field, as reported by ``get_fields``.

    Parameters
    ----------
    type : str
        One of ``"number"``, ``"string"``, ``"bool"`` (DESIGN section 2).
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
