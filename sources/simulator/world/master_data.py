"""Master data: what the plant knows before any order arrives.

The catalogues below are what generation draws from: work centres, product families and
sizes, raw materials, customer names and places. ``MasterData`` holds what it drew: the
products with their routing work centre and bill of material, and each customer's ship-to
place with its receiving calendar.
"""

from __future__ import annotations

import dataclasses

from ...calendars import FactoryCalendar

WORK_CENTERS = (
    ("WC-10", "Assembly line 1"),
    ("WC-20", "CNC milling"),
    ("WC-30", "Assembly line 2"),
    ("WC-40", "Welding cell"),
    ("WC-50", "Paint shop"),
    ("WC-60", "CNC turning"),
    ("WC-70", "Electrical assembly"),
    ("WC-80", "Test bench"),
)
# Product family, base unit price (EUR), routing work centre.
FAMILIES = (
    ("Hydraulic pump", 1800.0, "WC-10"),
    ("Machined housing", 1200.0, "WC-20"),
    ("Gearbox", 4200.0, "WC-30"),
    ("Welded frame", 2600.0, "WC-40"),
    ("Coated enclosure", 1500.0, "WC-50"),
    ("Precision spindle", 6800.0, "WC-60"),
    ("Control cabinet", 9500.0, "WC-70"),
    ("Servo drive unit", 5200.0, "WC-80"),
)
SIZES = (1.0, 1.6, 2.5, 4.0, 6.5)
RAW_MATERIALS = tuple(
    (f"RM-{2001 + i}", ("PC", "KG", "M", "PC", "PC")[i % 5]) for i in range(60)
)
CUSTOMER_NAMES = (
    "Nordwind Maschinenbau", "Alpina Foods", "Rheintal Energie", "Baltic Shipyards", "Vista Packaging",
    "Helvetia Pharma", "Danube Mining", "Iberia Motors", "Polaris Robotics", "Cascade Paper",
    "Lumen Optics", "Aurora Textiles", "Solis Agritech", "Meridian Rail", "Tatra Steelworks",
    "Fjord Aquaculture", "Provence Cosmetics", "Lombardia Plastics", "Elbe Logistics", "Carpathia Chemicals",
    "Atlas Cranes", "Brabant Brewing", "Cerulean Water", "Delta Turbines", "Emerald Printing",
    "Falcon Aerospace", "Granite Construction", "Harbor Cold Chain", "Ionic Batteries", "Juniper Medical",
    "Kestrel Wind", "Lakeside Dairy", "Mosel Glassworks", "Nimbus Datacenters", "Orion Pipelines",
    "Pioneer Tractors", "Quartz Semiconductors", "Redwood Furniture", "Saxon Tools", "Tundra HVAC",
    "Umbria Ceramics", "Vortex Pumps", "Westfalen Metals", "Xenon Lighting", "Yellowstone Mills",
    "Zenith Elevators", "Adriatic Ports", "Bavaria Bottling", "Corvus Defence", "Dolomiti Cable Cars",
)
SUFFIXES = ("GmbH", "AG", "S.A.", "Ltd", "B.V.", "S.p.A.", "AB", "Sp. z o.o.", "Inc.", "SE")
# Country, city, region (ISO 3166-2 subdivision as the holidays package knows it), time zone.
CITIES = (
    ("DE", "Hamburg", "HH", "Europe/Berlin"), ("DE", "Munich", "BY", "Europe/Berlin"),
    ("DE", "Cologne", "NW", "Europe/Berlin"), ("FR", "Lyon", None, "Europe/Paris"),
    ("FR", "Toulouse", None, "Europe/Paris"), ("IT", "Milan", "MI", "Europe/Rome"),
    ("IT", "Turin", "TO", "Europe/Rome"), ("NL", "Rotterdam", None, "Europe/Amsterdam"),
    ("PL", "Wroclaw", "02", "Europe/Warsaw"), ("AT", "Linz", "4", "Europe/Vienna"),
    ("CH", "Basel", "BS", "Europe/Zurich"), ("CZ", "Brno", None, "Europe/Prague"),
    ("SE", "Gothenburg", None, "Europe/Stockholm"), ("ES", "Bilbao", "PV", "Europe/Madrid"),
    ("GB", "Birmingham", "ENG", "Europe/London"), ("US", "Chicago", "IL", "America/Chicago"),
    ("BE", "Antwerp", None, "Europe/Brussels"), ("DK", "Aarhus", None, "Europe/Copenhagen"),
)


@dataclasses.dataclass(frozen=True, slots=True)
class Product:
    """A finished good: its list price, the work centre that makes it and its bill of
    material as (raw material, unit, quantity per piece)."""

    material: str
    unit_price: float
    work_center: str
    bom: tuple[tuple[str, str, float], ...]


@dataclasses.dataclass(frozen=True, slots=True)
class ShipTo:
    """Where a customer takes delivery: the place (``"City, CC"``) and its receiving days
    and hours."""

    place: str
    receiving: FactoryCalendar

    @property
    def country(self) -> str:
        """The ship-to's country code."""
        return self.place.rsplit(", ", 1)[-1]

    @property
    def hub(self) -> str:
        """The carrier hub a shipment to this place passes through."""
        return f"Hub {self.country}" if self.country != "DE" else "Hub Kassel, DE"


class MasterData:
    """The products and ship-to places of one generated world."""

    def __init__(self) -> None:
        self.catalogue: list[Product] = []  # in catalogue order; generation samples from it
        self.ship_tos: dict[str, ShipTo] = {}  # per customer, in customer order
        self._products: dict[str, Product] = {}

    def add_product(self, product: Product) -> None:
        """Add a product at the end of the catalogue."""
        self.catalogue.append(product)
        self._products[product.material] = product

    def product(self, material: str) -> Product:
        """The product ``material``."""
        return self._products[material]
