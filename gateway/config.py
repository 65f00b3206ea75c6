"""Gateway configuration: defaults that run the demo, a TOML file, environment overrides.

Precedence, lowest first: built-in defaults → the TOML file (``--config FILE``) →
environment variables ``ORDERGRAPH_<SECTION>_<KEY>`` (for a source:
``ORDERGRAPH_SOURCES_<SYSTEM>_<KEY>``, e.g. ``ORDERGRAPH_SOURCES_MES_BASE_URL``; for an
event secret: ``ORDERGRAPH_EVENTS_SECRET_<SYSTEM>``).
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from pathlib import Path
from typing import Any

from sources.calendars import CalendarError, FactoryCalendar, parse_shift, parse_weekdays
from sources.events import EventLimits
from sources.keys import KeyFormats, check_patterns

from .cache import DEFAULT_MAXSIZE

SYSTEMS = ("erp", "mes", "wms", "qms", "tms")


class ConfigError(ValueError):
    """The configuration file or an environment override is invalid."""


@dataclasses.dataclass(slots=True)
class SourceConfig:
    """How to reach one source system, and how to bound its faults (sources/resilience.py)."""

    base_url: str
    timeout_seconds: float = 5.0  # budget of one call: waiting for a slot, retries, backoff
    max_connections: int = 50
    batch_size: int = 500  # keys per upstream call; the simulated plant takes up to 1,000
    retries: int = 2  # reads only, jittered exponential backoff, within the budget
    backoff_seconds: float = 0.05
    retry_budget_ratio: float = 0.2  # retries at most this share of recent calls
    breaker_failures: int = 5  # consecutive failures that open the circuit breaker
    breaker_failure_rate: float = 0.5  # or this failure rate over breaker_window calls
    breaker_window: int = 20
    breaker_cooldown_seconds: float = 5.0  # open → one half-open probe
    max_in_flight: int = 20  # bulkhead: calls in flight to this source
    stale_if_error: bool = True  # serve the last good record, marked stale, when it fails
    stale_after_seconds: float = 900.0  # no answered call and no event this long: stale
    # --- connector profile (gateway/connect.py) ---
    # "rest": the contract of sources/API.md. "sap-odata" (ERP, QMS; MES below): SAP S/4HANA's OData
    # v2 APIs (API_SALES_ORDER_SRV, API_BUSINESS_PARTNER; QMS: API_INSPECTIONLOT_SRV); base_url is the SAP host
    # (https://my-s4.example.com), the services are under /sap/opu/odata/sap.
    profile: str = "rest"
    sap_client: str = ""  # three digits, e.g. "100"; empty: the system's default client
    username: str = ""  # basic auth (an SAP communication user)
    password: str = ""
    oauth_token_url: str = ""  # OAuth 2.0 client credentials (e.g. SAP BTP), instead of basic
    oauth_client_id: str = ""
    oauth_client_secret: str = ""
    max_url_length: int = 8000  # a key batch's $filter is cut into requests under this
    # "sap-odata" on the MES is mixed: SAP serves production orders (API_PRODUCTION_ORDER_2_SRV
    # at base_url, the SAP host), not the shop floor, so work centres and their state keep
    # coming over the MES's REST contract (sources/API.md) at rest_url, which it then needs.
    # So on the WMS: outbound deliveries (API_OUTBOUND_DELIVERY_SRV;v=0002) from SAP,
    # component availability from rest_url; it must push (deliveries cannot be polled).
    rest_url: str = ""
    # --- reconciliation polling (gateway/reconcile.py) ---
    # Read the changes since a durable watermark every poll_seconds. 0: off while the
    # source pushes; for a source that does not push (pushes = false), 0 means 30 s. On a
    # pushing source a slow poll (e.g. 300) is the sweep that heals missed webhooks.
    pushes: bool = True
    poll_seconds: float = 0.0
    # Re-read this much before the watermark (source time): a change committed late in the
    # same second is not missed; records already seen are not journaled twice.
    poll_overlap_seconds: float = 2.0


@dataclasses.dataclass(slots=True)
class CacheConfig:
    maxsize: int = DEFAULT_MAXSIZE  # records kept (gateway/cache.py)
    ttl_seconds: float = 300.0
    # Each record's lifetime is shortened by a random share of up to this much of
    # ttl_seconds, so records read together do not all expire (and get re-read) at once.
    ttl_jitter: float = 0.2
    # Whole responses (gateway/response_cache.py), dropped by the events that touch what
    # they read; at most this long (and never longer than ttl_seconds), since section
    # statuses and predictions also move with the clock. 0 turns the response cache off.
    response_ttl_seconds: float = 5.0
    # Answers that did not read the clock, or whose rules recorded the instant their value
    # changes by the clock (a scheduled start passing), live until that instant, at most
    # this long (and never longer than ttl_seconds); events still drop them at once.
    response_max_seconds: float = 60.0
    response_maxsize: int = 10_000


@dataclasses.dataclass(slots=True)
class GatewayConfig:
    host: str = "127.0.0.1"
    port: int = 8000
    max_body_bytes: int = 1_048_576  # HTTP bodies and WebSocket messages alike
    max_header_bytes: int = 32_768  # a request's line and headers: 431 beyond (gateway/server.py)
    max_first: int = 500  # cap on `first` in connections
    # Completed orders (delivered, or cut) leave the default `orders` listing this many
    # days after their last change; `includeCompleted: true` or a stage filter with
    # DELIVERED lists them, `order(id:)` reads them. 0 (default): they stay listed.
    list_completed_days: float = 0.0
    # The key cursors are sealed with (resolvers/pagination.py). Empty: a random key kept
    # beside the journal (<journal>.cursor-key), or in Redis for replicas ([scaleout]), so
    # every replica shares it and a restart keeps it. Set it (ORDERGRAPH_GATEWAY_CURSOR_SECRET)
    # when replicas share no journal, or to rotate it (rotating ends every client's cursors).
    cursor_secret: str = ""
    graphiql: bool = True
    # Move long-lived objects out of the garbage collector's full passes this often
    # (gateway/app.py: Gateway._freeze_periodically); 0 = Python's default behaviour.
    gc_freeze_seconds: float = 5.0
    # ...and unfreeze and collect everything this often: cycles that died while frozen wait
    # for this pass, and their memory (the RSS) grows until it runs. Passes are spaced at
    # least 100 times their own CPU apart (a big plant's heap takes seconds to walk).
    gc_full_seconds: float = 60.0
    # A long full pass (a quarter second or more: a big plant's heap, seconds at 100,000
    # orders, a pause every answer in flight would wait for) that falls due while
    # operations run waits for a quiet second (none running, none ended in the last
    # second), at most this long. Short passes run when due.
    gc_full_defer_seconds: float = 300.0
    # Processes serving the same port (``ordergraph serve --workers``); more than one needs
    # [scaleout] redis_url: they share state through Redis like replicas.
    workers: int = 1
    # "fast": graphql-core's executor with plain reads taken directly (resolvers/execution.py;
    # the standard path instead when graphql-core or strawberry differ from the tested
    # versions); "standard": graphql-core's executor over strawberry's own resolvers.
    executor: str = "fast"


DEV_SECRETS = {s: f"dev-secret-{s}" for s in SYSTEMS}


@dataclasses.dataclass(slots=True)
class EventsConfig:
    """Event ingestion (``POST /events``) and the journal."""

    # HMAC secret per source system; the defaults are for development only
    secrets: dict[str, str] = dataclasses.field(default_factory=lambda: dict(DEV_SECRETS))
    max_body_bytes: int = 1_048_576
    max_batch: int = 1000
    tolerance_seconds: float = 300.0  # age of a request's signature timestamp
    # Door checks of each event (sources/events.py EventLimits): 400 when one fails.
    max_id_length: int = 256
    max_source_length: int = 256
    max_subject_length: int = 256
    max_data_depth: int = 32  # JSON nesting of `data`
    max_future_seconds: float = 300.0  # `time` at most this far ahead of the gateway's clock
    max_age_days: float = 365.0  # `time` at most this far back; 0 = no bound
    # Record key patterns per field (full match), replacing the SAP-shaped defaults of
    # sources/keys.py, e.g. {SalesOrder = "[0-9]{10}"}. Set in the TOML file only.
    key_formats: dict[str, str] = dataclasses.field(default_factory=dict)
    # An event whose processing failed this many times in a row is parked as a dead letter
    # (one a source refuses outright, with a 4xx, is parked at once); `ordergraph events`.
    park_after_failures: int = 5
    journal_path: str = "var/journal.sqlite"
    retention_days: float = 30.0
    max_events: int = 5_000_000

    def limits(self) -> EventLimits:
        """The door checks of ``POST /events`` these settings describe."""
        return EventLimits(
            max_id_length=self.max_id_length,
            max_source_length=self.max_source_length,
            max_subject_length=self.max_subject_length,
            max_data_depth=self.max_data_depth,
            max_future_seconds=self.max_future_seconds,
            max_age_days=self.max_age_days,
            key_formats=KeyFormats(self.key_formats),
        )


@dataclasses.dataclass(slots=True)
class SubscriptionsConfig:
    queue_size: int = 1000  # per connection; beyond it, updates of one order coalesce
    max_per_connection: int = 100
    connection_init_timeout_seconds: float = 10.0
    keepalive_seconds: float = 15.0


@dataclasses.dataclass(slots=True)
class ScaleoutConfig:
    """Several gateway replicas behind a load balancer, sharing one Redis.

    Empty ``redis_url``: the embedded default (SQLite journal, in-process bus). Set, e.g.
    ``redis://127.0.0.1:6379/0``: journal on Redis Streams and bus over Redis pub/sub
    (``gateway/redis_journal.py``, ``gateway/redis_bus.py``). Replicas that should act as one
    share ``redis_url`` and ``key_prefix`` and each have their own ``replica_id``.
    """

    redis_url: str = ""
    key_prefix: str = "ordergraph:"
    replica_id: str = ""  # empty: hostname-pid
    # An event a replica took but did not finish within this is taken over by another.
    lease_seconds: float = 30.0
    # How often an idle replica looks for other replicas' events and expired leases.
    poll_seconds: float = 1.0
    # One replica evaluates every order (exceptions, the order index) under this lease;
    # when it dies another takes over after at most this long (gateway/evaluator.py).
    evaluator_lease_seconds: float = 10.0


@dataclasses.dataclass(slots=True)
class AuthConfig:
    """Who may ask (``gateway/auth.py``): JWT bearer tokens, roles, CORS and CSRF.

    ``mode = "jwt"`` (the default) refuses requests without a valid token (401).
    ``mode = "open"`` is an explicit demo mode: requests without a token act as an
    integrator (logged loudly at start); a token, when sent, is still checked.
    HS256 tokens need ``hs256_secret`` (development); RS256/ES256 tokens need
    ``jwks_url`` (production; keys are cached and refetched on rotation).
    """

    mode: str = "jwt"
    hs256_secret: str = ""
    jwks_url: str = ""
    jwks_ttl_seconds: float = 300.0  # refetch the key set this often
    jwks_min_refetch_seconds: float = 30.0  # at most one refetch per interval for unknown key ids
    issuer: str = "ordergraph"
    audience: str = "ordergraph"
    leeway_seconds: float = 30.0  # clock skew allowed on exp / nbf / iat
    role_claim: str = "role"
    customer_claim: str = "customer"
    introspection_roles: list[str] = dataclasses.field(default_factory=lambda: ["integrator"])
    cors_origins: list[str] = dataclasses.field(default_factory=list)  # empty: same origin only
    csrf_prevention: bool = True


@dataclasses.dataclass(slots=True)
class LimitsConfig:
    """Hostile-query limits (``gateway/admission.py``, ``gateway/documents.py``); ``gateway.max_first`` caps `first`."""

    max_depth: int = 12
    max_aliases: int = 30
    max_tokens: int = 3000
    # The document's shape, checked on the parsed document before validation
    # (gateway/shape.py): validation's work grows faster than the document.
    max_fields: int = 500  # field nodes written in the document
    max_selections: int = 200  # fields one selection set asks for, its fragments' included
    max_merge_checks: int = 2000  # comparisons of same-named fields validation would make
    max_fragments: int = 100
    # Seconds of CPU per second a viewer may spend on documents not seen before (parsing
    # and validating them, in one worker thread); cached documents cost nothing. Past it:
    # 429 until the budget refills. 0 turns the budget off.
    document_seconds_per_second: float = 0.01
    document_seconds_burst: float = 0.1
    max_cost: int = 50_000
    list_size: int = 10  # assumed length of a list without `first`, for the cost
    persisted_only: bool = False
    persisted_queries: str = ""  # an Apollo persisted-query manifest (JSON) beside the examples
    persisted_exempt_roles: list[str] = dataclasses.field(default_factory=lambda: ["integrator"])
    rate_per_second: float = 50.0  # per viewer; 0 turns rate limiting off
    rate_burst: int = 200
    connections_per_viewer: int = 20  # live connections at once: WebSockets and SSE streams together


@dataclasses.dataclass(slots=True)
class MqttConfig:
    """The shop floor over MQTT (``gateway/mqtt.py``): Sparkplug B or the plain-JSON profile.

    Empty ``url``: no MQTT consumer. ``mqtt://host:1883`` or ``mqtts://host:8883`` (TLS,
    verified against the system's CAs or ``tls_ca_file``). Each mapped message becomes the
    same change as a pushed MES event (journaled, deduplicated, invalidating, pushed).
    """

    url: str = ""
    username: str = ""
    password: str = ""  # ORDERGRAPH_MQTT_PASSWORD rather than the file
    tls_ca_file: str = ""  # PEM bundle of the broker's CA (mqtts://); empty: the system's CAs
    tls_cert_file: str = ""  # client certificate (mutual TLS), with tls_key_file
    tls_key_file: str = ""
    tls_insecure: bool = False  # skip the broker's host name check (test brokers only)
    profile: str = "sparkplug"  # sparkplug | json
    group: str = ""  # Sparkplug group id to follow; empty: every group (spBv1.0/+/...)
    json_prefix: str = "shopfloor"  # json profile: <prefix>/<plant>/<work centre>/<kind>
    client_id: str = ""  # empty: ordergraph-<host>-<pid>
    qos: int = 1
    keepalive_seconds: int = 30
    reconnect_min_seconds: float = 0.5  # first wait after a lost connection; doubles
    reconnect_max_seconds: float = 30.0
    rebirth_interval_seconds: float = 5.0  # at most one rebirth request per edge node this often


@dataclasses.dataclass(slots=True)
class CarriersConfig:
    """Carrier tracking messages (``gateway/carriers.py``).

    ``POST /carriers/aftership``: AfterShip webhooks, verified with ``aftership_secret``
    (AfterShip's webhook secret; header ``aftership-hmac-sha256``). ``POST /carriers/edi214``:
    EDI 214 text with ``Authorization: Bearer <edi214_token>``. An empty secret or token
    turns its endpoint off (404). The defaults are for development only.
    """

    aftership_secret: str = "dev-secret-aftership"
    edi214_token: str = "dev-secret-edi214"
    # Times without a zone (EDI 214 AT7 without a time code, date-only AfterShip
    # estimates) are read in this zone; empty: the plant's ([calendar] time_zone).
    time_zone: str = ""


_WEEKDAYS = ["MON", "TUE", "WED", "THU", "FRI"]


@dataclasses.dataclass(slots=True)
class CalendarConfig:
    """The plant's factory calendar and the delivery calendar of its ship-tos.

    Production, quality and picking lead times count working time on the plant's calendar:
    ``working_days``, ``shifts`` (local times; ``22:00-06:00`` runs past midnight) and the
    public holidays of ``country`` and ``region`` (the ``holidays`` package's codes, e.g.
    DE / BW), in ``time_zone``. Transit, slack and days late count the working days of each
    ship-to: ``delivery_days`` and ``receiving_hours`` there, with the public holidays of the
    customer's country and region, in its time zone (the plant's for a customer without a
    country). The defaults are the simulated plant's: Stuttgart, two shifts, Mon–Fri.
    """

    country: str = "DE"
    region: str = "BW"  # empty: the country's nationwide holidays only
    time_zone: str = "Europe/Berlin"
    working_days: list[str] = dataclasses.field(default_factory=lambda: list(_WEEKDAYS))
    shifts: list[str] = dataclasses.field(default_factory=lambda: ["06:00-14:00", "14:00-22:00"])
    delivery_days: list[str] = dataclasses.field(default_factory=lambda: list(_WEEKDAYS))
    receiving_hours: list[str] = dataclasses.field(default_factory=lambda: ["08:00-17:00"])

    def plant_calendar(self) -> FactoryCalendar:
        """The plant's factory calendar; ``CalendarError`` when a setting cannot work."""
        return FactoryCalendar.build(
            time_zone=self.time_zone,
            country=self.country.upper() or None,
            subdivision=self.region or None,
            working_days=parse_weekdays(self.working_days),
            shifts=tuple(parse_shift(s) for s in self.shifts),
        )

    def delivery_calendar(self) -> FactoryCalendar:
        """Receiving days and hours of a ship-to, in the plant's zone until placed at one
        (``FactoryCalendar.for_place``)."""
        return FactoryCalendar.build(
            time_zone=self.time_zone,
            working_days=parse_weekdays(self.delivery_days),
            shifts=tuple(parse_shift(s) for s in self.receiving_hours),
        )


@dataclasses.dataclass(slots=True)
class FederationConfig:
    """Serve /graphql as an Apollo Federation v2 subgraph (resolvers/federation.py): the
    same schema plus ``_service`` and ``_entities`` for a router. Off: the plain schema of
    ``schema.graphql``, for clients that query the gateway directly."""

    enabled: bool = False


@dataclasses.dataclass(slots=True)
class TelemetryConfig:
    """OpenTelemetry traces (gateway/telemetry.py) and the log format. Off by default; the
    standard ``OTEL_*`` variables (OTEL_TRACES_EXPORTER=otlp, OTEL_EXPORTER_OTLP_ENDPOINT,
    OTEL_SERVICE_NAME, OTEL_TRACES_SAMPLER…) turn it on and configure it too."""

    traces: bool = False
    otlp_endpoint: str = ""  # e.g. http://collector:4318 (OTLP over HTTP); empty: OTEL_* or the SDK default
    service_name: str = "ordergraph"
    sample_ratio: float = 1.0  # of root traces; a caller's sampled flag in traceparent is followed
    json_logs: bool = False  # one JSON object per log line, with trace_id and span_id


@dataclasses.dataclass(slots=True)
class NoticesConfig:
    """Proactive notices (``gateway/notices.py``): rules, channels, delivery.

    Customers register their own webhook and email endpoints (GraphQL
    ``registerNotificationEndpoint``); the internal ones are set here. Working days count
    on each ship-to's delivery calendar (``[calendar]``). Wall-clock seconds throughout.
    """

    enabled: bool = True
    # SQLite outbox; empty: beside the journal (<journal>.notices.sqlite), in memory when
    # the journal is. With [scaleout] redis_url the outbox is on that Redis, shared.
    outbox_path: str = ""
    date_move_working_days: int = 1  # a predicted date past the promise (or a further move) by this much
    delayed: bool = True
    shipped: bool = True
    delivered: bool = True
    critical_unacknowledged_minutes: float = 30.0  # internal: 0 turns the rule off
    debounce_seconds: float = 900.0  # one notice per customer per order per window
    max_attempts: int = 8  # then the delivery is a dead letter (`ordergraph notices dead|replay`)
    backoff_seconds: float = 5.0  # first retry; doubles per attempt, with full jitter
    max_backoff_seconds: float = 3600.0
    timeout_seconds: float = 10.0  # one webhook call or SMTP session
    allow_http_webhooks: bool = False  # https only, unless set (demo, tests, a plant's own network)
    smtp_host: str = ""  # empty: no email
    smtp_port: int = 25
    smtp_username: str = ""
    smtp_password: str = ""
    smtp_starttls: bool = False
    email_from: str = "ordergraph <notices@ordergraph.invalid>"
    internal_webhook_url: str = ""
    internal_webhook_secret: str = ""  # whsec_… (Standard Webhooks); empty: generated and logged once
    internal_emails: list[str] = dataclasses.field(default_factory=list)
    portal_url: str = ""  # linked from emails when set


@dataclasses.dataclass(slots=True)
class Config:
    gateway: GatewayConfig = dataclasses.field(default_factory=GatewayConfig)
    cache: CacheConfig = dataclasses.field(default_factory=CacheConfig)
    events: EventsConfig = dataclasses.field(default_factory=EventsConfig)
    subscriptions: SubscriptionsConfig = dataclasses.field(default_factory=SubscriptionsConfig)
    scaleout: ScaleoutConfig = dataclasses.field(default_factory=ScaleoutConfig)
    auth: AuthConfig = dataclasses.field(default_factory=AuthConfig)
    limits: LimitsConfig = dataclasses.field(default_factory=LimitsConfig)
    calendar: CalendarConfig = dataclasses.field(default_factory=CalendarConfig)
    federation: FederationConfig = dataclasses.field(default_factory=FederationConfig)
    telemetry: TelemetryConfig = dataclasses.field(default_factory=TelemetryConfig)
    mqtt: MqttConfig = dataclasses.field(default_factory=MqttConfig)
    carriers: CarriersConfig = dataclasses.field(default_factory=CarriersConfig)
    notices: NoticesConfig = dataclasses.field(default_factory=NoticesConfig)
    sources: dict[str, SourceConfig] = dataclasses.field(default_factory=dict)

    @classmethod
    def for_plant(cls, plant_url: str, **gateway: Any) -> Config:
        """Configuration that points every source at one simulated plant."""
        cfg = cls(gateway=GatewayConfig(**gateway))
        cfg.sources = {s: SourceConfig(base_url=f"{plant_url.rstrip('/')}/{s}") for s in SYSTEMS}
        return cfg


DEFAULT_PLANT_URL = "http://127.0.0.1:8100"
SECTIONS = ("gateway", "cache", "events", "subscriptions", "scaleout", "auth", "limits", "calendar")
SECTIONS += ("federation", "telemetry")  # subgraph, OpenTelemetry
SECTIONS += ("mqtt", "carriers")  # shop floor over MQTT, carrier tracking messages
SECTIONS += ("notices",)  # proactive notices


def _coerce(value: str, target: Any) -> Any:
    if isinstance(target, dict):
        raise ValueError("a table: set it in the TOML file")
    if isinstance(target, list):  # comma-separated, e.g. ORDERGRAPH_AUTH_CORS_ORIGINS
        return [v.strip() for v in value.split(",") if v.strip()]
    if isinstance(target, bool):
        return value.lower() in ("1", "true", "yes", "on")
    if isinstance(target, int):
        return int(value)
    if isinstance(target, float):
        return float(value)
    return value


def _apply(obj: Any, values: dict[str, Any], where: str) -> None:
    names = {f.name for f in dataclasses.fields(obj)}
    for key, value in values.items():
        if key not in names:
            raise ConfigError(f"{where}: unknown setting {key!r} (known: {', '.join(sorted(names))})")
        current = getattr(obj, key)
        if isinstance(value, str) and not isinstance(current, str):
            try:
                value = _coerce(value, current)
            except ValueError as exc:
                raise ConfigError(f"{where}.{key}: {exc}") from exc
        setattr(obj, key, value)


def load_config(path: str | Path | None = None, env: dict[str, str] | None = None) -> Config:
    """Build the configuration from defaults, an optional TOML file and the environment."""
    env = dict(os.environ if env is None else env)
    cfg = Config.for_plant(DEFAULT_PLANT_URL)
    data: dict[str, Any] = {}
    if path is not None:
        try:
            data = tomllib.loads(Path(path).read_text())
        except FileNotFoundError as exc:
            raise ConfigError(f"configuration file not found: {path}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: invalid TOML: {exc}") from exc
    for section in SECTIONS:
        _apply(getattr(cfg, section), data.get(section, {}), section)
    for system, values in data.get("sources", {}).items():
        if system not in SYSTEMS:
            raise ConfigError(f"sources.{system}: unknown system (known: {', '.join(SYSTEMS)})")
        _apply(cfg.sources[system], values, f"sources.{system}")
    unknown = set(data) - {*SECTIONS, "sources"}
    if unknown:
        raise ConfigError(f"unknown section(s): {', '.join(sorted(unknown))}")

    prefix = "ORDERGRAPH_"
    for name, value in env.items():
        if not name.startswith(prefix):
            continue
        parts = name[len(prefix) :].lower().split("_")
        if parts[0] == "sources" and len(parts) >= 3 and parts[1] in SYSTEMS:
            _apply(cfg.sources[parts[1]], {"_".join(parts[2:]): value}, f"env {name}")
        elif parts[0] == "events" and len(parts) >= 3 and parts[1] == "secret" and parts[2] in SYSTEMS:
            cfg.events.secrets[parts[2]] = value
        elif parts[0] in SECTIONS and len(parts) >= 2:
            _apply(getattr(cfg, parts[0]), {"_".join(parts[1:]): value}, f"env {name}")
    if cfg.auth.mode not in ("jwt", "open"):
        raise ConfigError(f"auth.mode: {cfg.auth.mode!r} is not 'jwt' or 'open'")
    if cfg.gateway.executor not in ("fast", "standard"):
        raise ConfigError(f"gateway.executor: {cfg.gateway.executor!r} is not 'fast' or 'standard'")
    for name in ("gc_freeze_seconds", "gc_full_seconds", "gc_full_defer_seconds"):
        if not getattr(cfg.gateway, name) >= 0:  # NaN too
            raise ConfigError(f"gateway.{name}: must be a number of seconds, 0 or more")
    try:
        cfg.calendar.plant_calendar()
        cfg.calendar.delivery_calendar()
    except (CalendarError, TypeError, AttributeError) as exc:
        raise ConfigError(f"calendar: {exc}") from exc
    check_events(cfg.events)
    check_mqtt(cfg.mqtt)
    check_notices(cfg.notices)
    check_sources(cfg.sources)
    return cfg


def check_notices(n: NoticesConfig) -> None:
    """Raise ConfigError for ``[notices]`` settings delivery cannot work with."""
    for name in ("date_move_working_days", "max_attempts", "smtp_port"):
        if not isinstance(getattr(n, name), int) or getattr(n, name) < 1:
            raise ConfigError(f"notices.{name}: must be a whole number of at least 1")
    for name in ("debounce_seconds", "backoff_seconds", "max_backoff_seconds", "critical_unacknowledged_minutes"):
        if getattr(n, name) < 0:
            raise ConfigError(f"notices.{name}: must not be negative")
    if n.timeout_seconds <= 0:
        raise ConfigError("notices.timeout_seconds: must be positive")
    if n.internal_webhook_url and not n.internal_webhook_url.startswith(("http://", "https://")):
        raise ConfigError("notices.internal_webhook_url: must be an http(s) URL")


PROFILES = ("rest", "sap-odata")
SAP_PROFILE_SYSTEMS = ("erp", "mes", "wms", "qms")  # the systems whose records SAP's OData APIs can serve
MIXED_PROFILE_SYSTEMS = ("mes", "wms")  # sap-odata for part of what they serve: the rest over REST (rest_url)


def check_sources(sources: dict[str, SourceConfig]) -> None:
    """Raise ConfigError for source settings that cannot work (profile, auth, polling)."""
    for system, s in sources.items():
        where = f"sources.{system}"
        if s.profile not in PROFILES:
            raise ConfigError(f"{where}.profile: {s.profile!r} is not one of {', '.join(PROFILES)}")
        if s.profile == "sap-odata" and system not in SAP_PROFILE_SYSTEMS:
            raise ConfigError(
                f"{where}.profile: sap-odata is served for {', '.join(f'sources.{x}' for x in SAP_PROFILE_SYSTEMS)} only so far"
            )
        if s.profile == "sap-odata" and system in MIXED_PROFILE_SYSTEMS and not s.rest_url:
            what = "production orders, not its work centres" if system == "mes" else "outbound deliveries, not its component availability"
            raise ConfigError(
                f"{where}.rest_url: needed with profile sap-odata: SAP serves this system's {what}, "
                "which come over its REST contract (sources/API.md) from rest_url"
            )
        if s.profile == "sap-odata" and system == "wms" and not s.pushes:
            raise ConfigError(
                f"{where}.pushes: must stay true with profile sap-odata: SAP's delivery header keeps a change day, "
                "not a time, so deliveries cannot be polled; relay SAP's outbound delivery events to POST /events"
            )
        if s.rest_url and not s.rest_url.startswith(("http://", "https://")):
            raise ConfigError(f"{where}.rest_url: must be an http(s) URL")
        if s.sap_client and not (s.sap_client.isdigit() and len(s.sap_client) == 3):
            raise ConfigError(f"{where}.sap_client: three digits, e.g. \"100\" (got {s.sap_client!r})")
        if s.username and s.oauth_token_url:
            raise ConfigError(f"{where}: set either username/password (basic) or oauth_token_url (OAuth), not both")
        if s.oauth_token_url and not s.oauth_client_id:
            raise ConfigError(f"{where}.oauth_client_id: needed with oauth_token_url")
        if s.max_url_length < 256:
            raise ConfigError(f"{where}.max_url_length: at least 256")
        if s.poll_seconds < 0 or s.poll_overlap_seconds < 0:
            raise ConfigError(f"{where}.poll_seconds and poll_overlap_seconds: must not be negative")
        if 0 < s.poll_seconds < 0.5:
            raise ConfigError(f"{where}.poll_seconds: at least 0.5 (or 0 for off)")


def check_events(ev: EventsConfig) -> None:
    """Raise ConfigError for ``[events]`` settings the door checks cannot work with."""
    if not isinstance(ev.key_formats, dict):
        raise ConfigError("events.key_formats: expected a table of field = pattern")
    if (problem := check_patterns(ev.key_formats)) is not None:
        raise ConfigError(f"events.key_formats.{problem}")
    for name in ("max_id_length", "max_source_length", "max_subject_length", "max_data_depth", "park_after_failures"):
        if not isinstance(getattr(ev, name), int) or getattr(ev, name) < 1:
            raise ConfigError(f"events.{name}: must be a whole number of at least 1")
    # orjson stores `data` up to 254 levels deep; past that the journal write would fail.
    if ev.max_data_depth > 200:
        raise ConfigError("events.max_data_depth: at most 200 (the journal stores no deeper)")
    if ev.max_future_seconds < 0 or ev.max_age_days < 0:
        raise ConfigError("events.max_future_seconds and events.max_age_days: must not be negative")


def check_mqtt(mq: MqttConfig) -> None:
    """Raise ConfigError for ``[mqtt]`` settings the consumer cannot work with."""
    from urllib.parse import urlsplit

    if mq.profile not in ("sparkplug", "json"):
        raise ConfigError(f"mqtt.profile: {mq.profile!r} is not 'sparkplug' or 'json'")
    if mq.url:
        try:
            parts = urlsplit(mq.url)
            parts.port  # noqa: B018 -- raises ValueError for a bad port
        except ValueError as exc:
            raise ConfigError(f"mqtt.url: {exc}") from None
        if parts.scheme not in ("mqtt", "mqtts", "tcp", "ssl") or not parts.hostname:
            raise ConfigError(f"mqtt.url: {mq.url!r} is not mqtt://host[:port] or mqtts://host[:port]")
    if mq.qos not in (0, 1, 2):
        raise ConfigError("mqtt.qos: must be 0, 1 or 2")
    if mq.group and any(c in mq.group for c in "+#/"):
        raise ConfigError(f"mqtt.group: {mq.group!r} must not contain + # or /")
    if not mq.json_prefix or any(c in mq.json_prefix for c in "+#"):
        raise ConfigError(f"mqtt.json_prefix: {mq.json_prefix!r} must be a topic prefix without + or #")
    if mq.reconnect_min_seconds <= 0 or mq.reconnect_max_seconds < mq.reconnect_min_seconds:
        raise ConfigError("mqtt.reconnect_min_seconds must be > 0 and at most reconnect_max_seconds")
