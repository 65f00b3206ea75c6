"""A local SMTP server that keeps what it receives: the demo's mailbox, and the tests'.

A real SMTP server (aiosmtpd) on loopback, in the running event loop: the gateway's
email channel talks SMTP to it exactly as to a plant's mail relay. Messages are kept in
memory (the newest ``limit``), parsed, for ``/notices`` and for assertions.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import email
import email.policy
import logging
import time
from email.message import EmailMessage
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session


@dataclasses.dataclass(frozen=True, slots=True)
class Mail:
    received_at: float
    mail_from: str
    rcpt_tos: tuple[str, ...]
    message: EmailMessage

    @property
    def message_id(self) -> str:
        return str(self.message.get("Message-ID", ""))

    @property
    def subject(self) -> str:
        return str(self.message.get("Subject", ""))

    def body(self, subtype: str = "plain") -> str:
        part = self.message.get_body(preferencelist=(subtype,))
        return part.get_content() if part is not None else ""

    def to_json(self) -> dict[str, Any]:
        return {
            "receivedAt": self.received_at,
            "from": self.mail_from,
            "to": list(self.rcpt_tos),
            "messageId": self.message_id,
            "subject": self.subject,
            "language": str(self.message.get("Content-Language", "")),
            "text": self.body("plain"),
        }


class SmtpSink:
    """An SMTP server keeping the messages it accepts. ``refuse`` > 0 answers that many
    transactions with a temporary failure (451), for retry tests."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, limit: int = 1000) -> None:
        self.host = host
        self.port = port
        self.messages: collections.deque[Mail] = collections.deque(maxlen=limit)
        self.refuse = 0
        self.received = asyncio.Event()
        self._server: asyncio.base_events.Server | None = None

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802 (aiosmtpd's hook name)
        if self.refuse > 0:
            self.refuse -= 1
            return "451 4.3.0 try again later"
        raw = envelope.original_content or (envelope.content if isinstance(envelope.content, bytes) else b"")
        message = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        self.messages.append(Mail(time.time(), str(envelope.mail_from), tuple(envelope.rcpt_tos), message))
        self.received.set()
        return "250 OK"

    async def start(self) -> SmtpSink:
        # aiosmtpd logs every SMTP command at INFO: one sink line per message is enough.
        logging.getLogger("mail.log").setLevel(logging.WARNING)
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: SMTP(self, hostname="ordergraph-sink", enable_SMTPUTF8=True, decode_data=False),
            self.host,
            self.port,
        )
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    def to_json(self, limit: int = 200) -> list[dict[str, Any]]:
        return [m.to_json() for m in list(self.messages)[-limit:]][::-1]
