"""The simulated plant: ERP, MES, WMS, QMS and TMS serving the source API contract."""

from .app import Simulator, create_app, run_simulator, start_simulator
from .world import LIFECYCLE_STATES, Change, World

__all__ = ["LIFECYCLE_STATES", "Change", "Simulator", "World", "create_app", "run_simulator", "start_simulator"]
