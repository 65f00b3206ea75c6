"""Errors of the shop-floor message decoders."""

from __future__ import annotations


class ShopFloorError(ValueError):
    """A shop-floor message that cannot be accepted; the message says why."""


class SparkplugError(ShopFloorError):
    """A Sparkplug B topic or payload that does not fit the specification."""


class JsonMessageError(ShopFloorError):
    """A message of the plain-JSON topic profile that does not fit it."""
