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

SYSTEMS = ("erp", "mes", "wms", "qms", "tms")


class ConfigError(ValueError):
    """The configuration file or an environment override is invalid."""


@dataclasses.dataclass(slots=True)
class SourceConfig:
    """How to reach one source system."""

    base_url: str
    timeout_seconds: float = 5.0
    max_connections: int = 50
    batch_size: int = 500  # keys per upstream call; the simulated plant takes up to 1,000


@dataclasses.dataclass(slots=True)
class CacheConfig:
    maxsize: int = 200_000
    ttl_seconds: float = 300.0


@dataclasses.dataclass(slots=True)
class GatewayConfig:
    host: str = "127.0.0.1"
    port: int = 8000
    max_body_bytes: int = 1_048_576
    max_first: int = 500  # cap on `first` in connections
    graphiql: bool = True


DEV_SECRETS = {s: f"dev-secret-{s}" for s in SYSTEMS}


@dataclasses.dataclass(slots=True)
class EventsConfig:
    """Event ingestion (``POST /events``) and the journal."""

    # HMAC secret per source system; the defaults are for development only
    secrets: dict[str, str] = dataclasses.field(default_factory=lambda: dict(DEV_SECRETS))
    max_body_bytes: int = 1_048_576
    max_batch: int = 1000
    tolerance_seconds: float = 300.0
    journal_path: str = "var/journal.sqlite"
    retention_days: float = 30.0
    max_events: int = 5_000_000


@dataclasses.dataclass(slots=True)
class SubscriptionsConfig:
    queue_size: int = 1000  # per connection; beyond it, updates of one order coalesce
    max_per_connection: int = 100
    connection_init_timeout_seconds: float = 10.0
    keepalive_seconds: float = 15.0


@dataclasses.dataclass(slots=True)
class Config:
    gateway: GatewayConfig = dataclasses.field(default_factory=GatewayConfig)
    cache: CacheConfig = dataclasses.field(default_factory=CacheConfig)
    events: EventsConfig = dataclasses.field(default_factory=EventsConfig)
    subscriptions: SubscriptionsConfig = dataclasses.field(default_factory=SubscriptionsConfig)
    sources: dict[str, SourceConfig] = dataclasses.field(default_factory=dict)

    @classmethod
    def for_plant(cls, plant_url: str, **gateway: Any) -> Config:
        """Configuration that points every source at one simulated plant."""
        cfg = cls(gateway=GatewayConfig(**gateway))
        cfg.sources = {s: SourceConfig(base_url=f"{plant_url.rstrip('/')}/{s}") for s in SYSTEMS}
        return cfg


DEFAULT_PLANT_URL = "http://127.0.0.1:8100"
SECTIONS = ("gateway", "cache", "events", "subscriptions")


def _coerce(value: str, target: Any) -> Any:
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
    return cfg
