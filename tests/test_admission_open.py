"""The open demo viewer (no token, ``auth.mode = "open"``) has no rate budget of its own;
a token's subject does, even when its claims look like the demo's."""

from __future__ import annotations

import asyncio

import pytest

from gateway.admission import Admission, rate_key
from gateway.auth import Authenticator
from gateway.config import AuthConfig, LimitsConfig
from gateway.errors import RequestError
from resolvers.policy import Role, Viewer


def test_open_mode_tokenless_requests_are_not_rate_limited() -> None:
    adm = Admission(Authenticator(AuthConfig(mode="open")), LimitsConfig(rate_per_second=1, rate_burst=1))

    async def admit_many() -> list[Viewer]:
        return [await adm.viewer(None) for _ in range(5)]

    viewers = asyncio.run(admit_many())
    for v in viewers:
        assert rate_key(v) is None
        adm.take(v)  # never refused: no budget to spend
    assert adm.rate.refused == 0


def test_a_viewer_with_a_subject_has_a_budget_and_is_refused_past_it() -> None:
    adm = Admission(Authenticator(AuthConfig(mode="open")), LimitsConfig(rate_per_second=1, rate_burst=1))
    # equal in role to the demo viewer but another subject: its own budget
    viewer = Viewer(Role.INTEGRATOR, subject="integrator:dev")
    assert rate_key(viewer) == "sub:integrator:dev"
    adm.take(viewer)
    with pytest.raises(RequestError) as exc:
        adm.take(viewer)
    assert exc.value.status == 429
