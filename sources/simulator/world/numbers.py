"""Number ranges: the next document number of each kind, as the source systems give them."""

from __future__ import annotations


class NumberRanges:
    """One counter per kind of document; numbers are given out in order and never reused."""

    def __init__(self) -> None:
        # The last number given out per range (the first one given is the next).
        self._last: dict[str, int] = {
            "sales_order": 10000000,
            "production_order": 1000000,
            "delivery": 80000000,
            "lot": 40000000000,
            "batch": 0,
            "stock_batch": 0,
            "bill_of_lading": 0,
            "tracking": 0,
        }

    def next(self, number_range: str, width: int = 0) -> str:
        """The next number of ``number_range``, zero-padded to ``width`` digits if given."""
        self._last[number_range] += 1
        value = self._last[number_range]
        return f"{value:0{width}d}" if width else str(value)

    def tracking_number(self, carrier: str) -> str:
        """The next tracking number, in the format of ``carrier``."""
        n = int(self.next("tracking"))
        if carrier == "UPS":
            return f"1Z4F7E2103{n:08d}"
        if carrier == "DHL Freight":
            return f"JJD{n + 10_000_000:014d}"
        if carrier == "DB Schenker":
            return f"SCHE{n:010d}"
        if carrier == "Kuehne+Nagel":
            return f"KN{n:010d}"
        return f"DSV{n:09d}"
