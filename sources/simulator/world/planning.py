"""An order's plan: which steps its life takes, how far apart, and how generated orders
spread over the lifecycle. Pure functions of a random generator and the order's flags.
"""

from __future__ import annotations

import dataclasses
import random

from .orders import (
    DELIVERED,
    GOODS_ISSUED,
    IN_PRODUCTION,
    IN_TRANSIT,
    MATERIAL_SHORTAGE,
    OUT_FOR_DELIVERY,
    PACKED,
    PICKED,
    PRODUCTION_COMPLETE,
    QUALITY_HOLD,
    QUALITY_REJECTED,
    QUALITY_RELEASED,
    RECEIVED,
    RELEASED,
)

# Share of generated orders per state (percent); every state gets at least one order.
STATE_WEIGHTS = {
    RECEIVED: 7,
    MATERIAL_SHORTAGE: 7,
    RELEASED: 8,
    IN_PRODUCTION: 13,
    PRODUCTION_COMPLETE: 2,
    QUALITY_HOLD: 6,
    QUALITY_REJECTED: 2,
    QUALITY_RELEASED: 4,
    PICKED: 4,
    PACKED: 3,
    GOODS_ISSUED: 4,
    IN_TRANSIT: 10,
    OUT_FOR_DELIVERY: 4,
    DELIVERED: 26,
}
# States where a generated order may be running behind its promise.
LATE_ELIGIBLE = frozenset(
    {MATERIAL_SHORTAGE, RELEASED, IN_PRODUCTION, QUALITY_HOLD, QUALITY_RELEASED, PICKED, PACKED, GOODS_ISSUED,
     OUT_FOR_DELIVERY}
)

# The state an order is in after each step ("decide" depends on the usage decision).
STEP_STATE = {
    "clear_shortage": RECEIVED,
    "release": RELEASED,
    "start": IN_PRODUCTION,
    "partial": IN_PRODUCTION,
    "confirm": PRODUCTION_COMPLETE,
    "inspect": QUALITY_HOLD,
    "rework": RELEASED,
    "unblock": QUALITY_RELEASED,
    "pick": PICKED,
    "pack": PACKED,
    "goods_issue": GOODS_ISSUED,
    "pickup": IN_TRANSIT,
    "delay": IN_TRANSIT,
    "en_route": IN_TRANSIT,
    "out_for_delivery": OUT_FOR_DELIVERY,
    "attempt_fail": OUT_FOR_DELIVERY,
    "deliver": DELIVERED,
}
# The steps that move one delivery from picking to the customer.
SHIPPING_STEPS = ("pick", "pack", "goods_issue", "pickup", "en_route", "out_for_delivery", "deliver")


@dataclasses.dataclass(slots=True)
class Flags:
    """What will go wrong in one order's life (drawn when it is generated)."""

    shortage: bool
    reject: bool
    block: str  # "", "credit" or "delivery"
    carrier_delay: bool
    attempt_fail: bool
    shortfall: bool


def state_quota(count: int) -> list[str]:
    """Target states for ``count`` orders in proportion to STATE_WEIGHTS.

    Every state gets at least one order when there are enough orders, so even a small
    world shows the whole lifecycle.
    """
    total = sum(STATE_WEIGHTS.values())
    quota = {s: int(count * w / total) for s, w in STATE_WEIGHTS.items()}
    if count >= len(quota):
        quota = {s: max(1, n) for s, n in quota.items()}
    while sum(quota.values()) > count:
        quota[max(quota, key=lambda s: quota[s])] -= 1
    quota[DELIVERED] += count - sum(quota.values())
    return [s for s, n in quota.items() for _ in range(n)]


def order_steps(flags: Flags) -> list[tuple[str, bool]]:
    """The order's life as (step, extra); extra steps are not in the delivery promise."""
    steps: list[tuple[str, bool]] = []
    if flags.shortage:
        steps.append(("clear_shortage", False))
    production = [("start", False), ("partial", False), ("confirm", False), ("inspect", False), ("decide", False)]
    steps += [("release", False), *production]
    if flags.reject:
        steps += [("rework", True), *[(n, True) for n, _ in production]]
    if flags.block:
        steps.append(("unblock", True))
    steps += [("pick", False), ("pack", False), ("goods_issue", False), ("pickup", False)]
    if flags.carrier_delay:
        steps.append(("delay", True))
    steps += [("en_route", False), ("out_for_delivery", False)]
    if flags.attempt_fail:
        steps.append(("attempt_fail", True))
    steps.append(("deliver", False))
    return steps


def states_after(steps: list[tuple[str, bool]], flags: Flags) -> list[str]:
    """The order's state after the first k steps, for k = 0..len(steps)."""
    states = [MATERIAL_SHORTAGE if flags.shortage else RECEIVED]
    rejects = 1 if flags.reject else 0
    for name, _extra in steps:
        if name == "decide":
            states.append(QUALITY_REJECTED if rejects else QUALITY_RELEASED)
            rejects = 0
        else:
            states.append(STEP_STATE[name])
    return states


def gap(name: str, rng: random.Random, production_hours: float, transit_hours: float) -> float:
    """Hours from the previous step to this one."""
    if name == "partial":
        return production_hours * rng.uniform(0.3, 0.6)
    if name == "confirm":
        return production_hours * rng.uniform(0.4, 0.7)
    if name == "en_route":
        return transit_hours * rng.uniform(0.3, 0.6)
    if name == "out_for_delivery":
        return transit_hours * rng.uniform(0.4, 0.7)
    lo, hi = {
        "clear_shortage": (24, 240),
        "release": (24, 240),
        "start": (4, 48),
        "inspect": (0.25, 2),
        "decide": (4, 30),
        "rework": (24, 72),
        "unblock": (24, 96),
        "pick": (4, 24),
        "pack": (1, 6),
        "goods_issue": (2, 12),
        "pickup": (1, 8),
        "delay": (24, 72),
        "attempt_fail": (2, 8),
        "deliver": (1, 8),
    }[name]
    return rng.uniform(lo, hi)
