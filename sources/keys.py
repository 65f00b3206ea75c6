"""The shape of each source system's record keys (SAP field lengths by default).

A key reaches the sources inside URLs and comma-separated batch filters, so a key that
could never name a record (70 KB long, a comma, a newline) is refused where it enters:
at ``POST /events``. The defaults follow SAP S/4HANA's field definitions, wide enough for
real keys (leading zeros, letters in external number ranges) and for the simulated
plant's; a plant whose systems use other keys overrides them per field
(``[events] key_formats`` in the configuration).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

# Field → full-match pattern. Lengths are SAP's: VBELN CHAR 10 (sales order, delivery),
# AUFNR CHAR 12 (production order), PRUEFLOS NUMC 12 (inspection lot), ARBPL CHAR 8 (work
# centre), MATNR CHAR 40 (material), CHARG CHAR 10 (batch), KUNNR CHAR 10 (customer),
# RSNUM NUMC 10 + item (reservation); tracking numbers up to 35 (EDI 214, AfterShip).
_ALNUM = "[A-Za-z0-9]"
_TAIL = "[A-Za-z0-9_./-]"
DEFAULT_KEY_FORMATS: dict[str, str] = {
    "SalesOrder": f"{_ALNUM}{{1,10}}",
    "ReferenceSDDocument": f"{_ALNUM}{{1,10}}",
    "DeliveryDocument": f"{_ALNUM}{{1,10}}",
    "ManufacturingOrder": f"{_ALNUM}{{1,12}}",
    "InspectionLot": f"{_ALNUM}{{1,12}}",
    "WorkCenter": f"{_ALNUM}{_TAIL}{{0,7}}",
    "Material": f"{_ALNUM}{_TAIL}{{0,39}}",
    "Batch": f"{_ALNUM}{_TAIL}{{0,9}}",
    "Customer": f"{_ALNUM}{{1,10}}",
    "Reservation": f"{_ALNUM}{_TAIL}{{0,23}}",
    "TrackingNumber": f"{_ALNUM}[A-Za-z0-9-]{{0,34}}",
}


class KeyFormats:
    """Compiled key patterns by field name; a field without a pattern is not checked."""

    def __init__(self, overrides: Mapping[str, str] | None = None) -> None:
        """``overrides``: field → regular expression (full match), replacing the default."""
        patterns = {**DEFAULT_KEY_FORMATS, **(overrides or {})}
        self.patterns = {field: re.compile(pattern) for field, pattern in patterns.items()}

    def problem(self, field: str, value: str) -> str | None:
        """Why ``value`` cannot be a ``field`` key, or None when it can."""
        pattern = self.patterns.get(field)
        if pattern is None or pattern.fullmatch(value):
            return None
        shown = value if len(value) <= 40 else f"{value[:40]}… ({len(value)} characters)"
        return f"{field} {shown!r} is not a valid key (expected {pattern.pattern})"


def check_patterns(overrides: Mapping[str, str]) -> str | None:
    """Why a configured set of key patterns is unusable, or None."""
    for field, pattern in overrides.items():
        if not isinstance(pattern, str):
            return f"{field}: the pattern must be a string"
        try:
            re.compile(pattern)
        except re.error as exc:
            return f"{field}: {pattern!r} is not a regular expression ({exc})"
    return None
