"""Names the reconciliation poller (``gateway/reconcile.py``) and the event processor share."""

POLL_WATERMARK = "__poll__"  # journal watermark (source, "__poll__", entity set): where its poll got to
POLLED = "polled:"  # journal watermark (source, "polled:<entity>", key): the newest change a poll applied
POLL_ID_PREFIX = "poll:"  # the ids of the events a poll journals


def is_polled(event_id: str) -> bool:
    """True for the events a reconciliation poll journaled."""
    return event_id.startswith(POLL_ID_PREFIX)
