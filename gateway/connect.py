"""How a source's configuration becomes a connector endpoint: the profile and its auth.

``[sources.erp] profile = "sap-odata"`` reads SAP S/4HANA's OData v2 APIs
(``sources/sap_erp.py``) with basic auth (``username``/``password``) or OAuth 2.0 client
credentials (``oauth_token_url``/``oauth_client_id``/``oauth_client_secret``).
``[sources.mes] profile = "sap-odata"`` reads production orders from SAP
(``sources/sap_mes.py``) and work centres from the MES's REST contract at ``rest_url``.
"""

from __future__ import annotations

from typing import Any

from sources.odata import BasicAuth, ClientCredentials

from .config import SourceConfig

DEFAULT_POLL_SECONDS = 30.0  # a source that does not push, with no poll_seconds set


def endpoint_settings(s: SourceConfig) -> dict[str, Any]:
    """The ``SourceEndpoint`` arguments of the profile (none for REST)."""
    if s.profile != "sap-odata":
        return {}
    auth: Any = None
    if s.oauth_token_url:
        auth = ClientCredentials(s.oauth_token_url, s.oauth_client_id, s.oauth_client_secret)
    elif s.username:
        auth = BasicAuth(s.username, s.password)
    return {
        "profile": "sap-odata", "auth": auth, "sap_client": s.sap_client or None, "max_url_length": s.max_url_length,
        "rest_url": s.rest_url,  # mixed profiles (MES): what SAP does not serve, over REST
    }


def poll_interval(s: SourceConfig) -> float:
    """Seconds between reconciliation polls of a source; 0 = off."""
    if s.poll_seconds > 0:
        return s.poll_seconds
    return 0.0 if s.pushes else DEFAULT_POLL_SECONDS
