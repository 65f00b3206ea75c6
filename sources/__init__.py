"""Connectors to the five source systems (ERP, MES, WMS, QMS, TMS).

Nothing here knows GraphQL: connectors take keys and return typed records
(``sources.records``). ``Sources`` bundles one connector per system.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import aiohttp

from .client import RequestHook, SourceClient, SourceError
from .erp import ErpConnector
from .mes import MesConnector
from .qms import QmsConnector
from .tms import TmsConnector
from .wms import WmsConnector

__all__ = ["SourceEndpoint", "SourceError", "Sources"]


@dataclasses.dataclass(slots=True)
class SourceEndpoint:
    """Where and how to call one source system."""

    base_url: str
    timeout_seconds: float = 5.0
    batch_size: int = 500


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
    ) -> Sources:
        """Build the connectors over ``session`` (the caller owns its lifetime)."""

        def client(system: str) -> SourceClient:
            ep = endpoints[system]
            return SourceClient(
                system,
                ep.base_url,
                session,
                timeout_seconds=ep.timeout_seconds,
                batch_size=ep.batch_size,
                on_request=on_request,
            )

        return cls(
            erp=ErpConnector(client("erp")),
            mes=MesConnector(client("mes")),
            wms=WmsConnector(client("wms")),
            qms=QmsConnector(client("qms")),
            tms=TmsConnector(client("tms")),
        )

    def clients(self) -> list[SourceClient]:
        return [self.erp.client, self.mes.client, self.wms.client, self.qms.client, self.tms.client]


def event_registry():
    """Every event type the five systems send (see ``sources.events``)."""
    from . import erp, mes, qms, tms, wms
    from .events import EventRegistry

    return EventRegistry([*erp.EVENT_TYPES, *mes.EVENT_TYPES, *wms.EVENT_TYPES, *qms.EVENT_TYPES, *tms.EVENT_TYPES])
