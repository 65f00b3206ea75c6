"""Connectors to the five source systems (ERP, MES, WMS, QMS, TMS).

Nothing here knows GraphQL: connectors take keys and return typed records
(``sources.records``). ``Sources`` bundles one connector per system.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp

from .client import InvalidKey, RequestHook, SourceClient, SourceError
from .erp import ErpConnector
from .keys import KeyFormats
from .mes import MesConnector
from .qms import QmsConnector
from .resilience import Policy, SourceHealth, utc_now
from .tms import TmsConnector
from .wms import WmsConnector

__all__ = ["InvalidKey", "Policy", "SourceEndpoint", "SourceError", "SourceHealth", "Sources"]


@dataclasses.dataclass(slots=True)
class SourceEndpoint:
    """Where and how to call one source system."""

    base_url: str
    timeout_seconds: float = 5.0
    batch_size: int = 500
    policy: Policy | None = None  # budget, retries, breaker, bulkhead; None: defaults + timeout
    # "rest" (sources/API.md) or, for the ERP, MES, WMS and QMS, "sap-odata" (SAP S/4HANA's
    # OData v2 APIs, sources/sap_{erp,mes,wms,qms}.py; base_url is the SAP host, auth and
    # sap_client as it needs).
    profile: str = "rest"
    auth: Any = None  # sources.odata.Auth (BasicAuth, ClientCredentials) for sap-odata
    sap_client: str | None = None
    max_url_length: int = 8000
    # "sap-odata" on the MES / WMS: base_url is the SAP host (production orders / outbound
    # deliveries over OData) and rest_url the system's REST contract for what SAP does not
    # serve (work centres / component availability). The QMS's profile is all OData.
    rest_url: str = ""


@dataclasses.dataclass(slots=True)
class Sources:
    """One connector per source system, sharing one HTTP session."""

    erp: ErpConnector
    mes: MesConnector
    wms: WmsConnector
    qms: QmsConnector
    tms: TmsConnector

    @classmethod
    def connect(
        cls,
        session: aiohttp.ClientSession,
        endpoints: Mapping[str, SourceEndpoint],
        on_request: RequestHook | None = None,
        *,
        clock: Callable[[], dt.datetime] = utc_now,
        generation: Callable[[], int] | None = None,
        key_formats: KeyFormats | None = None,
    ) -> Sources:
        """Build the connectors over ``session`` (the caller owns its lifetime).

        ``clock`` stamps the sources' health; ``generation`` (the cache's invalidation
        count) keeps single-flight from sharing a read that began before an invalidation;
        ``key_formats`` (default: SAP's shapes) decides which keys may be sent at all.
        """

        def client(system: str, base_url: str | None = None) -> SourceClient:
            ep = endpoints[system]
            return SourceClient(
                system,
                base_url or ep.base_url,
                session,
                timeout_seconds=ep.timeout_seconds,
                batch_size=ep.batch_size,
                on_request=on_request,
                policy=ep.policy,
                clock=clock,
                generation=generation,
                key_formats=key_formats,
            )

        erp_endpoint = endpoints["erp"]
        if erp_endpoint.profile == "sap-odata":
            from .sap_erp import SapErpConnector

            erp: ErpConnector = SapErpConnector(
                client("erp"),
                auth=erp_endpoint.auth,
                sap_client=erp_endpoint.sap_client,
                max_url_length=erp_endpoint.max_url_length,
            )
        else:
            erp = ErpConnector(client("erp"))
        mes_endpoint = endpoints["mes"]
        if mes_endpoint.profile == "sap-odata":  # production orders from SAP, the rest over REST
            from .sap_mes import SapMesConnector

            mes: MesConnector = SapMesConnector(
                client("mes", mes_endpoint.rest_url),
                sap_url=mes_endpoint.base_url,
                auth=mes_endpoint.auth,
                sap_client=mes_endpoint.sap_client,
                max_url_length=mes_endpoint.max_url_length,
            )
        else:
            mes = MesConnector(client("mes"))
        wms_endpoint = endpoints["wms"]
        if wms_endpoint.profile == "sap-odata":  # deliveries from SAP, components over REST
            from .sap_wms import SapWmsConnector

            wms: WmsConnector = SapWmsConnector(
                client("wms", wms_endpoint.rest_url),
                sap_url=wms_endpoint.base_url,
                auth=wms_endpoint.auth,
                sap_client=wms_endpoint.sap_client,
                max_url_length=wms_endpoint.max_url_length,
            )
        else:
            wms = WmsConnector(client("wms"))
        qms_endpoint = endpoints["qms"]
        if qms_endpoint.profile == "sap-odata":  # inspection lots: all in SAP's API
            from .sap_qms import SapQmsConnector

            qms: QmsConnector = SapQmsConnector(
                client("qms"),
                auth=qms_endpoint.auth,
                sap_client=qms_endpoint.sap_client,
                max_url_length=qms_endpoint.max_url_length,
            )
        else:
            qms = QmsConnector(client("qms"))
        return cls(
            erp=erp,
            mes=mes,
            wms=wms,
            qms=qms,
            tms=TmsConnector(client("tms")),
        )

    @property
    def key_formats(self) -> KeyFormats:
        """The key shapes the connectors send (one set for all five)."""
        return self.erp.client.key_formats

    def clients(self) -> list[SourceClient]:
        return [self.erp.client, self.mes.client, self.wms.client, self.qms.client, self.tms.client]

    def client(self, system: str) -> SourceClient:
        """The client of one system ("erp", "mes", ...); KeyError for anything else."""
        for c in self.clients():
            if c.name == system:
                return c
        raise KeyError(system)

    def health(self, now: dt.datetime | None = None) -> dict[str, SourceHealth]:
        """Breaker state, last success, last error and last event of every source."""
        return {c.name: c.resilience.health(now) for c in self.clients()}

    def note_event(self, system: str, at: dt.datetime | None = None) -> None:
        """Record that ``system`` sent an event (it is alive); unknown systems are ignored."""
        for c in self.clients():
            if c.name == system:
                c.resilience.note_event(at)

    async def aclose(self) -> None:
        """Cancel the reads still in flight (the session is closed by its owner)."""
        for c in self.clients():
            await c.resilience.aclose()


def event_registry(limits: Any = None):
    """Every event type the five systems send (see ``sources.events``), checked against
    ``limits`` (an ``EventLimits``; the defaults when None)."""
    from . import erp, mes, qms, tms, wms
    from .events import EventRegistry

    return EventRegistry(
        [*erp.EVENT_TYPES, *mes.EVENT_TYPES, *wms.EVENT_TYPES, *qms.EVENT_TYPES, *tms.EVENT_TYPES], limits
    )
