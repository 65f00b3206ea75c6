"""How a notice reaches people: signed webhooks (Standard Webhooks) and email (SMTP).

Both carry the notice's id as their idempotency key, the same on every attempt: the
``webhook-id`` header (signed with the body and a timestamp by the ``standardwebhooks``
package, so receivers verify with any Standard Webhooks library) and the email's
``Message-ID``. A receiver that sees an id twice has seen the same notice twice.

Emails have a text and an HTML body in customer-safe words (no internal causes, values
or records), in English or German: the endpoint's language, else the customer's from
the ERP.
"""

from __future__ import annotations

import datetime as dt
import html
from email.message import EmailMessage
from email.utils import formatdate
from typing import Any

import aiohttp
import orjson
from standardwebhooks.webhooks import Webhook

from resolvers.notice_rules import (
    BACK_ON_TRACK,
    CRITICAL_UNACKNOWLEDGED,
    DELIVERED,
    DELIVERY_DELAYED,
    SHIPPED,
)

from .outbox import Endpoint, Notice


class DeliveryError(Exception):
    """One attempt failed (retried until the dead letter)."""


# --- words ------------------------------------------------------------------------------

_MONTHS = {
    "en": ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December"],
    "de": ["Januar", "Februar", "März", "April", "Mai", "Juni", "Juli", "August", "September", "Oktober", "November", "Dezember"],
}
_DAYS = {
    "en": ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"],
    "de": ["Montag", "Dienstag", "Mittwoch", "Donnerstag", "Freitag", "Samstag", "Sonntag"],
}

_WORDS: dict[str, dict[str, str]] = {
    "en": {
        "subject": "Your order {order}: {what}",
        "greeting": "Dear {name},",
        "order": "order {order}",
        "order_of": "order {order}",
        "reference": " (your reference {po})",
        DELIVERY_DELAYED: "We now expect to deliver your {order_words} on {predicted}, later than the {promised} we confirmed. We are sorry for the delay and will tell you when this changes.",
        DELIVERY_DELAYED + ":again": "The expected delivery of your {order_words} has moved from {previous} to {predicted} (confirmed: {promised}).",
        BACK_ON_TRACK: "Good news: your {order_words} is back on schedule. We expect to deliver it by the confirmed date, {promised}.",
        SHIPPED: "Your {order_words} has left our plant.",
        "tracking": "Track it with {carrier}: {number}",
        "tracking_done": "Delivered by {carrier}, tracking number {number}",
        DELIVERED: "Your {order_words} has been delivered in full{when}.",
        "delivered_when": " on {date}",
        "subject_" + DELIVERY_DELAYED: "new expected delivery date",
        "subject_" + BACK_ON_TRACK: "back on schedule",
        "subject_" + SHIPPED: "shipped",
        "subject_" + DELIVERED: "delivered",
        "portal": "See its status at any time: {url}",
        "closing": "Kind regards,\nYour customer service",
        "footer": "You receive this message because your company asked to be notified about its orders.",
    },
    "de": {
        "subject": "Ihr Auftrag {order}: {what}",
        "greeting": "Sehr geehrte Damen und Herren von {name},",
        "order": "Auftrag {order}",
        "order_of": "Auftrags {order}",  # genitive: die Lieferung Ihres Auftrags …
        "reference": " (Ihre Bestellnummer {po})",
        DELIVERY_DELAYED: "Wir erwarten die Lieferung Ihres {order_of} nun am {predicted}, später als der bestätigte {promised}. Wir bitten die Verzögerung zu entschuldigen und melden uns, sobald sich etwas ändert.",
        DELIVERY_DELAYED + ":again": "Der erwartete Liefertermin Ihres {order_of} hat sich vom {previous} auf den {predicted} verschoben (bestätigt: {promised}).",
        BACK_ON_TRACK: "Gute Nachricht: Ihr {order_words} liegt wieder im Plan. Wir erwarten die Lieferung zum bestätigten Termin, {promised}.",
        SHIPPED: "Ihr {order_words} hat unser Werk verlassen.",
        "tracking": "Sendungsverfolgung bei {carrier}: {number}",
        "tracking_done": "Zugestellt von {carrier}, Sendungsnummer {number}",
        DELIVERED: "Ihr {order_words} wurde{when} vollständig zugestellt.",
        "delivered_when": " am {date}",
        "subject_" + DELIVERY_DELAYED: "neuer voraussichtlicher Liefertermin",
        "subject_" + BACK_ON_TRACK: "wieder im Plan",
        "subject_" + SHIPPED: "versandt",
        "subject_" + DELIVERED: "zugestellt",
        "portal": "Den aktuellen Stand sehen Sie jederzeit hier: {url}",
        "closing": "Mit freundlichen Grüßen\nIhr Kundenservice",
        "footer": "Sie erhalten diese Nachricht, weil Ihr Unternehmen Benachrichtigungen zu seinen Aufträgen angefordert hat.",
    },
}


def format_date(value: str | dt.date | None, language: str) -> str:
    """A date in words: "Tuesday, 15 December 2026" / "Dienstag, 15. Dezember 2026"."""
    if value is None:
        return ""
    day = value if isinstance(value, dt.date) else dt.date.fromisoformat(str(value)[:10])
    lang = language if language in _MONTHS else "en"
    weekday, month = _DAYS[lang][day.weekday()], _MONTHS[lang][day.month - 1]
    if lang == "de":
        return f"{weekday}, {day.day}. {month} {day.year}"
    return f"{weekday}, {day.day} {month} {day.year}"


def notice_language(notice: Notice, endpoint: Endpoint | None) -> str:
    lang = (endpoint.language if endpoint is not None and endpoint.language else notice.context.get("language")) or "en"
    return lang if lang in _WORDS else "en"


def render(notice: Notice, language: str, *, portal_url: str = "") -> tuple[str, list[str]]:
    """(subject, paragraphs) of a customer notice in ``language``."""
    w = _WORDS.get(language, _WORDS["en"])
    order = notice.subject
    po = notice.context.get("purchaseOrder")
    reference = w["reference"].format(po=po) if po else ""
    order_words = w["order"].format(order=order) + reference
    order_of = w["order_of"].format(order=order) + reference
    paragraphs = [w["greeting"].format(name=notice.context.get("customerName") or notice.customer)]
    for item in notice.items:
        kind = item["kind"]
        fields = {
            "order_words": order_words,
            "order_of": order_of,
            "predicted": format_date(item.get("predicted"), language),
            "promised": format_date(item.get("promised"), language),
            "previous": format_date(item.get("previous"), language),
        }
        if kind == DELIVERY_DELAYED:
            key = DELIVERY_DELAYED + ":again" if item.get("previous") else DELIVERY_DELAYED
            paragraphs.append(w[key].format(**fields))
        elif kind == BACK_ON_TRACK:
            paragraphs.append(w[BACK_ON_TRACK].format(**fields))
        elif kind in (SHIPPED, DELIVERED):
            if kind == SHIPPED:
                text = w[SHIPPED].format(**fields)
            else:
                when = item.get("deliveredAt")
                text = w[DELIVERED].format(
                    when=w["delivered_when"].format(date=format_date(when, language)) if when else "", **fields
                )
            line = w["tracking"] if kind == SHIPPED else w["tracking_done"]
            lines = [line.format(carrier=carrier, number=number) for carrier, number in item.get("tracking") or []]
            paragraphs.append("\n".join([text, *lines]))
    if portal_url:
        paragraphs.append(w["portal"].format(url=portal_url))
    paragraphs.append(w["closing"])
    main = notice.items[-1]["kind"] if notice.items else ""
    subject = w["subject"].format(order=order, what=w.get("subject_" + main, main.lower()))
    return subject, paragraphs


def render_internal(notice: Notice) -> tuple[str, list[str]]:
    """(subject, paragraphs) of an internal notice (English, the plant's words)."""
    ctx = notice.context
    minutes = ctx.get("minutes")
    subject = f"CRITICAL exception unacknowledged for {minutes:g} min: {notice.subject}"
    paragraphs = [
        f"The CRITICAL exception {notice.subject} ({ctx.get('kind', '')}) has been open and unacknowledged "
        f"for {minutes:g} minutes.",
        f"{ctx.get('description', '')}",
        f"Orders hit: {ctx.get('affectedOrders', 0)}; value at risk: {ctx.get('valueAtRisk', '')}.",
        "Acknowledge or assign it on the exceptions board.",
    ]
    return subject, [p for p in paragraphs if p]


def payload(notice: Notice) -> dict[str, Any]:
    """The webhook body: Standard Webhooks' ``type``, ``timestamp`` and ``data``."""
    main = notice.items[-1]["kind"] if notice.items else "notice"
    internal = main == CRITICAL_UNACKNOWLEDGED
    data: dict[str, Any] = {"noticeId": notice.id, "items": notice.items}
    if internal:
        data.update({"exceptionId": notice.subject, **notice.context})
    else:
        data.update(
            {
                "orderId": notice.subject,
                "customerId": notice.customer,
                "purchaseOrder": notice.context.get("purchaseOrder"),
                "promisedDeliveryDate": notice.context.get("promised"),
                "predictedDeliveryDate": notice.context.get("predicted"),
            }
        )
    return {
        "type": ("exception." if internal else "order.") + main.lower(),
        "timestamp": dt.datetime.fromtimestamp(notice.created_at, dt.UTC).isoformat().replace("+00:00", "Z"),
        "data": data,
    }


# --- webhooks ------------------------------------------------------------------------------


async def send_webhook(session: aiohttp.ClientSession, notice: Notice, endpoint: Endpoint, timeout: float) -> None:
    """POST the notice, signed; a 2xx is delivered, anything else raises DeliveryError."""
    body = orjson.dumps(payload(notice)).decode()
    now = dt.datetime.now(dt.UTC)
    signature = Webhook(endpoint.secret).sign(notice.id, now, body)
    headers = {
        "content-type": "application/json",
        "webhook-id": notice.id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": signature,
        "user-agent": "ordergraph-notices",
    }
    try:
        async with session.post(
            endpoint.target, data=body.encode(), headers=headers, timeout=aiohttp.ClientTimeout(total=timeout),
            allow_redirects=False,
        ) as resp:
            if not 200 <= resp.status < 300:
                raise DeliveryError(f"HTTP {resp.status} from {endpoint.target}")
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        raise DeliveryError(f"{type(exc).__name__}: {exc or 'timeout'}") from exc


# --- email -----------------------------------------------------------------------------------


def email_message(notice: Notice, endpoint: Endpoint, *, sender: str, portal_url: str = "") -> EmailMessage:
    """The email of a notice: text and HTML, ``Message-ID`` = the notice's id."""
    if notice.customer == "":
        subject, paragraphs = render_internal(notice)
        language = "en"
    else:
        language = notice_language(notice, endpoint)
        url = f"{portal_url.rstrip('/')}" if portal_url else ""
        subject, paragraphs = render(notice, language, portal_url=url)
    msg = EmailMessage()
    msg["Subject"] = subject
    msg["From"] = sender
    msg["To"] = endpoint.target
    msg["Date"] = formatdate(notice.created_at, usegmt=True)
    domain = sender.rsplit("@", 1)[-1].strip("> ") or "ordergraph.invalid"
    msg["Message-ID"] = f"<{notice.id}@{domain}>"
    msg["X-Ordergraph-Notice"] = notice.id
    footer = _WORDS[language]["footer"] if notice.customer else ""
    msg.set_content("\n\n".join([*paragraphs, footer]).strip() + "\n")
    body = "".join(f"<p>{html.escape(p).replace(chr(10), '<br>')}</p>" for p in paragraphs)
    if footer:
        body += f'<p style="color:#666;font-size:smaller">{html.escape(footer)}</p>'
    msg.add_alternative(
        f'<!doctype html><html lang="{language}"><head><meta charset="utf-8"><title>{html.escape(subject)}</title></head>'
        f"<body>{body}</body></html>",
        subtype="html",
    )
    msg["Content-Language"] = language  # after the bodies: setting content drops Content-* headers
    return msg


async def send_email(notice: Notice, endpoint: Endpoint, config: Any) -> None:
    """Send over SMTP (``[notices] smtp_*``); refused or unreachable raises DeliveryError."""
    import aiosmtplib

    if not config.smtp_host:
        raise DeliveryError("no SMTP server configured ([notices] smtp_host)")
    msg = email_message(notice, endpoint, sender=config.email_from, portal_url=config.portal_url)
    try:
        await aiosmtplib.send(
            msg,
            hostname=config.smtp_host,
            port=config.smtp_port,
            username=config.smtp_username or None,
            password=config.smtp_password or None,
            start_tls=config.smtp_starttls,
            use_tls=False,
            timeout=config.timeout_seconds,
        )
    except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
        raise DeliveryError(f"SMTP {config.smtp_host}:{config.smtp_port}: {exc}") from exc
