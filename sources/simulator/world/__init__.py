"""The simulated plant's world: a deterministic, seeded world of source records.

``World`` (``plant.py``) is the one object the servers, the event emitter, the bench and
the tests use; it wires the world's concerns together, one module each (see ``plant.py``
for the list). Who imports whom, from the bottom up (a module imports only from lines
above its own; ``tests/test_simulator.py`` checks it):

    tables, clock, numbers, master_data
    store: tables, clock           working_time: clock, master_data
    orders: store                  planning: orders        quantities: orders, working_time
    production: store, numbers, master_data, orders, working_time
    shipping: as production, and quantities
    lifecycle: production, shipping, planning, quantities
    disruptions: production, shipping, orders, store, clock, working_time
    amendments: orders, planning, quantities, store, clock, working_time
    generation: lifecycle, production, planning, quantities, ...
    scheduler: lifecycle, disruptions        reports: store, clock, orders
    plant: World, the only module that knows them all

The names below are what the rest of the code imports from here.
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
