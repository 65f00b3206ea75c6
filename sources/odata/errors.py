"""SAP Gateway's error answers, mapped to the gateway's typed source errors.

An OData v2 error body::

    {"error": {"code": "SY/530", "message": {"lang": "en", "value": "..."},
               "innererror": {"errordetails": [{"code", "message", "severity", "target"}]}}}

Messages on successful answers come in the ``sap-message`` header, a JSON object::

    {"code": "ZSD/012", "message": "...", "severity": "warning", "target": "",
     "details": [{"code", "message", "severity", "target"}]}

How HTTP statuses map (``SourceError.code`` / ``client_fault``):

=====================  ===================  ============  =========================
status                 code                 client_fault  why
=====================  ===================  ============  =========================
400 404 405 406 409    SOURCE_BAD_RESPONSE  yes           the request is wrong; the
412 414 415 501                                           source is up; not retried
401 403                SOURCE_BAD_RESPONSE  no            bad credentials or roles: not
                                                          retried, and they open the
                                                          breaker, so a wrong password
                                                          does not lock the SAP user
408 429 5xx            SOURCE_UNAVAILABLE   no            transient: retried by policy
=====================  ===================  ============  =========================

A ``sap-message`` of severity ``error`` on a 2xx answer is SOURCE_BAD_RESPONSE too.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import orjson

from ..resilience import SOURCE_BAD_RESPONSE, SOURCE_UNAVAILABLE, SourceError

__all__ = ["ODataError", "SapMessage", "error_for_status", "parse_error_body", "parse_sap_message"]

SEVERITIES = ("success", "info", "warning", "error")


@dataclasses.dataclass(frozen=True, slots=True)
class SapMessage:
    """One SAP message (from ``sap-message`` or an error body's details)."""

    code: str
    message: str
    severity: str  # success / info / warning / error
    target: str = ""
    details: tuple[SapMessage, ...] = ()

    def all(self) -> list[SapMessage]:
        """This message and its details, flat."""
        return [self, *(d for detail in self.details for d in detail.all())]


class ODataError(SourceError):
    """A ``SourceError`` that keeps what SAP said: HTTP status, SAP message code and text."""

    def __init__(
        self,
        source: str,
        code: str,
        message: str,
        *,
        status: int | None = None,
        sap_code: str | None = None,
        sap_message: str | None = None,
        messages: tuple[SapMessage, ...] = (),
        client_fault: bool = False,
    ) -> None:
        super().__init__(source, code, message, client_fault=client_fault)
        self.status = status
        self.sap_code = sap_code
        self.sap_message = sap_message
        self.messages = messages


def _message(obj: Any) -> SapMessage | None:
    if not isinstance(obj, Mapping):
        return None
    text = obj.get("message")
    if isinstance(text, Mapping):  # error-body style {"lang", "value"}
        text = text.get("value")
    severity = str(obj.get("severity") or "error").lower()
    details = tuple(m for d in obj.get("details") or () if (m := _message(d)) is not None)
    return SapMessage(
        code=str(obj.get("code") or ""),
        message=str(text or ""),
        severity=severity if severity in SEVERITIES else "error",
        target=str(obj.get("target") or ""),
        details=details,
    )


def parse_sap_message(header: str | None) -> list[SapMessage]:
    """The messages of a ``sap-message`` header (empty when absent).

    A header that is not JSON is kept as one message of severity ``info`` with the raw
    text, rather than lost.
    """
    if not header:
        return []
    try:
        obj = orjson.loads(header)
    except orjson.JSONDecodeError:
        return [SapMessage(code="", message=header[:500], severity="info")]
    items = obj if isinstance(obj, list) else [obj]
    return [m for item in items if (m := _message(item)) is not None]


def parse_error_body(body: bytes) -> SapMessage | None:
    """The ``{"error": …}`` of an OData error answer, with its ``errordetails``; None when
    the body is not one (an HTML page from a proxy, an empty body)."""
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    error = obj.get("error") if isinstance(obj, dict) else None
    if not isinstance(error, dict):
        return None
    top = _message(error)
    if top is None:
        return None
    inner = error.get("innererror")
    details = inner.get("errordetails") if isinstance(inner, dict) else None
    extra = tuple(m for d in details or () if (m := _message(d)) is not None)
    # SAP repeats the main message among the details; keep the others.
    extra = tuple(m for m in extra if (m.code, m.message) != (top.code, top.message))
    return dataclasses.replace(top, severity="error", details=top.details + extra)


_CLIENT_FAULTS = frozenset({400, 404, 405, 406, 409, 410, 412, 414, 415, 416, 422, 501})
_TRANSIENT = frozenset({408, 425, 429})


def error_for_status(
    source: str, what: str, status: int, body: bytes, headers: Mapping[str, str] | None = None
) -> ODataError:
    """The typed error for a non-2xx answer to a read of ``what``."""
    error = parse_error_body(body)
    header_messages = parse_sap_message((headers or {}).get("sap-message"))
    messages = tuple([*(error.all() if error else []), *(m for h in header_messages for m in h.all())])
    said = f": {error.code} {error.message}".rstrip() if error else ""
    if not error and body and status < 500:
        said = f": {body[:200].decode('utf-8', 'replace')!r}"
    if status in (401, 403):
        what_failed = "refused our credentials" if status == 401 else "denied access (missing role or authorization)"
        return ODataError(
            source, SOURCE_BAD_RESPONSE, f"{what} {what_failed}: HTTP {status}{said}",
            status=status, sap_code=error.code if error else None,
            sap_message=error.message if error else None, messages=messages,
        )
    if status >= 500 and status not in _CLIENT_FAULTS or status in _TRANSIENT:
        return ODataError(
            source, SOURCE_UNAVAILABLE, f"{what} answered HTTP {status}{said}",
            status=status, sap_code=error.code if error else None,
            sap_message=error.message if error else None, messages=messages,
        )
    return ODataError(
        source, SOURCE_BAD_RESPONSE, f"{what} refused the request: HTTP {status}{said}",
        status=status, sap_code=error.code if error else None,
        sap_message=error.message if error else None, messages=messages, client_fault=True,
    )


def error_for_messages(source: str, what: str, messages: list[SapMessage]) -> ODataError | None:
    """A 2xx answer whose ``sap-message`` says ``error``: the answer is not to be trusted."""
    errors = [m for top in messages for m in top.all() if m.severity == "error"]
    if not errors:
        return None
    first = errors[0]
    return ODataError(
        source, SOURCE_BAD_RESPONSE, f"{what}: SAP reported an error with the answer: {first.code} {first.message}".rstrip(),
        sap_code=first.code, sap_message=first.message, messages=tuple(errors),
    )
