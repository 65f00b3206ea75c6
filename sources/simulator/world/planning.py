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


@dataclasses.dataclass(frozen=True, slots=True)
class OrderPlan:
    """One order's life in hours from its order date: what will go wrong, its steps and
    when each is due, the promise, and where the plant clock's start falls in it."""

    flags: Flags
    names: list[str]  # the steps, in order
    times: list[float]  # hours from the order date to each step
    gaps: list[float]  # hours before each step
    planned: dict[str, float]  # each step's time on the nominal path (no extra steps)
    confirmed_rel: float  # the promise
    now_rel: float  # the plant clock's start
    production_hours: float

    @property
    def extra_transit_hours(self) -> float:
        """The hours a carrier delay and a failed attempt add to the journey."""
        extra = 0.0
        if self.flags.carrier_delay:
            extra = self.gaps[self.names.index("delay")]
        if self.flags.attempt_fail:
            extra += self.gaps[self.names.index("attempt_fail")]
        return extra


def plan_order(rng: random.Random, target: str) -> OrderPlan:
    """An order's plan such that it is in state ``target`` at the plant clock's start: the
    flags drawn (``target`` forces those it needs), the gaps between steps, the promise
    with safety time over the nominal path, and now placed in the step range where the
    order is in ``target``; now and then an order that runs late without a disruption.
    """
    flags = Flags(
        shortage=target == MATERIAL_SHORTAGE or (target != RECEIVED and rng.random() < 0.12),
        reject=target == QUALITY_REJECTED or rng.random() < 0.04,
        block=rng.choice(("credit", "delivery")) if rng.random() < 0.07 else "",
        carrier_delay=rng.random() < (0.3 if target == IN_TRANSIT else 0.08),
        attempt_fail=rng.random() < (0.2 if target == OUT_FOR_DELIVERY else 0.05),
        shortfall=rng.random() < 0.08,
    )
    steps = order_steps(flags)
    production_hours = rng.uniform(8, 96)
    transit_hours = rng.uniform(24, 96)
    gaps = [gap(name, rng, production_hours, transit_hours) for name, _extra in steps]
    lead = rng.uniform(24, 35 * 24)  # order received -> release
    if flags.shortage:
        split = rng.uniform(0.5, 0.9)
        gaps[0], gaps[1] = lead * split, lead * (1 - split) + rng.uniform(2, 24)
    else:
        gaps[0] = lead

    def cumulate() -> list[float]:
        out, total = [], 0.0
        for g in gaps:
            total += g
            out.append(total)
        return out

    # The promise is planned on the nominal path; extra steps (rework, blocks, carrier
    # delays, failed attempts) are what makes real orders late.
    planned: dict[str, float] = {}
    total = 0.0
    for (name, extra), g in zip(steps, gaps, strict=True):
        if not extra:
            total += g
            planned.setdefault(name, total)
    # Planners confirm with some safety time over the plan: two to six days.
    confirmed_rel = planned["deliver"] + rng.uniform(48, 144)
    names = [name for name, _ in steps]
    if flags.carrier_delay:
        # A carrier delay must push delivery past the end of the promised day.
        times = cumulate()
        needed = confirmed_rel + 24 + rng.uniform(12, 48) - times[-1]
        if needed > 0:
            gaps[names.index("delay")] += needed
    times = cumulate()

    states = states_after(steps, flags)
    eligible = [k for k, s in enumerate(states) if s == target] or [0]
    k = rng.choice(eligible)
    # A healthy plant: few orders run late without a disruption to show for it.
    late = rng.random() < (0.06 if target in LATE_ELIGIBLE else 0.05 if target == DELIVERED else 0.0)
    lo = times[k - 1] if k > 0 else 0.0
    if k < len(steps):
        now_rel = lo + rng.uniform(0.02, 0.98) * (times[k] - lo)
        if late:
            now_rel = max(now_rel, confirmed_rel + 24 + rng.uniform(6, 144))
            shift = now_rel + rng.uniform(2, 48) - times[k]
            if shift > 0:
                gaps[k] += shift
                times = cumulate()
    else:
        if late:
            j = rng.choice([i for i, n in enumerate(names) if n in ("start", "confirm", "en_route", "pick")])
            shift = confirmed_rel + 24 + rng.uniform(6, 96) - times[-1]
            if shift > 0:
                gaps[j] += shift
                times = cumulate()
        now_rel = times[-1] + rng.uniform(1, 24 * 30)
    return OrderPlan(flags, names, times, gaps, planned, confirmed_rel, now_rel, production_hours)
