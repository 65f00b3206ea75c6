"""The simulated plant's world: a deterministic, seeded world of source records.

``World`` (in ``plant``) is the one object the servers, the event emitter, the bench and
the tests use; it owns the records and the clock and hands each concern to its module.
"""

from .master_data import WORK_CENTERS
from .orders import LIFECYCLE_STATES
from .plant import World
from .quantities import REJECTION_REASON
from .store import Change, UnknownKey
from .tables import ENTITY_SETS, SYSTEMS, EntitySet, Table, api_attributes, find_entity_set
from .working_time import PLANT_CALENDAR, RECEIVING_CALENDAR

__all__ = [
    "ENTITY_SETS",
    "LIFECYCLE_STATES",
    "PLANT_CALENDAR",
    "RECEIVING_CALENDAR",
    "REJECTION_REASON",
    "SYSTEMS",
    "WORK_CENTERS",
    "Change",
    "EntitySet",
    "Table",
    "UnknownKey",
    "World",
    "api_attributes",
    "find_entity_set",
]
