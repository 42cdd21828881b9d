"""The cars the simulator can create: data, not code."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class CarModel:
    """One make and model with the figures its physics needs."""

    vendor: str
    brand: str
    model: str
    year: int
    capacity_kwh: float
    max_ac_kw: float
    consumption_kwh_per_km: float
    max_current_a: float
    reports_odometer: bool = True
    # XPENG only reports a new position once the car is parked (see reference/enode.md, pitfalls).
    location_while_driving: bool = True
    controllable: bool = True
    # Combustion models (only the Xee cloud has them) carry fuel, not charge: their "state of
    # charge" is the tank's fill level in percent.
    tank_l: float = 0.0
    fuel_l_per_100km: float = 0.0

    @property
    def combustion(self) -> bool:
        """Whether the car burns fuel rather than charging a battery."""
        return self.tank_l > 0

    @property
    def store(self) -> float:
        """Size of the energy store: the tank in litres, or the battery in kWh."""
        return self.tank_l if self.combustion else self.capacity_kwh

    @property
    def store_per_km(self) -> float:
        """Energy store used per km: litres, or kWh."""
        return self.fuel_l_per_100km / 100 if self.combustion else self.consumption_kwh_per_km


CATALOG: tuple[CarModel, ...] = (
    CarModel("TESLA", "Tesla", "Model 3", 2022, 57.5, 11.0, 0.15, 16),
    CarModel("VOLKSWAGEN", "Volkswagen", "ID.4", 2023, 77.0, 11.0, 0.18, 16),
    CarModel(
        "XPENG",
        "XPENG",
        "G6",
        2024,
        87.5,
        11.0,
        0.17,
        16,
        reports_odometer=False,
        location_while_driving=False,
    ),
    CarModel("KIA", "Kia", "EV6", 2023, 74.0, 11.0, 0.17, 16, controllable=False),
    CarModel("POLESTAR", "Polestar", "2", 2022, 75.0, 11.0, 0.19, 16),
    CarModel("BYD", "BYD", "Atto 3", 2023, 60.5, 11.0, 0.16, 16),
    CarModel("RENAULT", "Renault", "Megane E-Tech", 2023, 60.0, 22.0, 0.16, 32, controllable=False),
    CarModel("BMW", "BMW", "i4 eDrive40", 2023, 80.7, 11.0, 0.17, 16),
)


def _combustion(
    vendor: str, brand: str, model: str, year: int, tank: float, l_100: float
) -> CarModel:
    return CarModel(
        vendor, brand, model, year, 0.0, 0.0, 0.0, 0.0, tank_l=tank, fuel_l_per_100km=l_100
    )


# Cars with a Xee dongle in the OBD port: mostly French petrol and diesel cars, some EVs.
# Kept apart from CATALOG so that Enode's seeded choices never change.
XEE_COMBUSTION: tuple[CarModel, ...] = (
    _combustion("PEUGEOT", "Peugeot", "208 1.2 PureTech", 2019, 44.0, 5.4),
    _combustion("RENAULT", "Renault", "Clio IV 1.5 dCi", 2017, 45.0, 4.1),
    _combustion("CITROEN", "Citroën", "C3 1.2 PureTech", 2018, 45.0, 5.2),
    _combustion("VOLKSWAGEN", "Volkswagen", "Golf VII 1.4 TSI", 2016, 50.0, 5.8),
)
XEE_ELECTRIC: tuple[CarModel, ...] = (
    CarModel("RENAULT", "Renault", "Zoe R110", 2020, 52.0, 22.0, 0.17, 32),
    CarModel("NISSAN", "Nissan", "Leaf", 2019, 40.0, 6.6, 0.17, 16),
)
# TecDoc kTypes, as Xee reports them.
KTYPES: dict[str, int] = {
    "208 1.2 PureTech": 123801,
    "Clio IV 1.5 dCi": 108345,
    "C3 1.2 PureTech": 125013,
    "Golf VII 1.4 TSI": 110283,
    "Zoe R110": 130755,
    "Leaf": 128612,
}

VENDORS: dict[str, tuple[CarModel, ...]] = {}
for _car in CATALOG:
    VENDORS.setdefault(_car.vendor, ())
    VENDORS[_car.vendor] += (_car,)

# Portal names shown in the Link UI and /health, as vendors brand their own apps.
PORTALS: dict[str, str] = {
    "TESLA": "Tesla",
    "VOLKSWAGEN": "We Connect",
    "XPENG": "XPENG",
    "KIA": "Kia Connect",
    "POLESTAR": "Polestar",
    "BYD": "BYD",
    "RENAULT": "My Renault",
    "BMW": "My BMW",
}

# Homes of simulated users: a few real cities, so maps look plausible.
CITIES: tuple[tuple[str, float, float], ...] = (
    ("Oslo", 59.9139, 10.7522),
    ("Amsterdam", 52.3676, 4.9041),
    ("Lyon", 45.7640, 4.8357),
    ("Munich", 48.1351, 11.5820),
    ("Copenhagen", 55.6761, 12.5683),
)

# Every vehicle vendor Enode 2024-10-01 names, with the name it shows people.
VEHICLE_VENDORS: dict[str, str] = {
    "ACURA": "Acura", "AUDI": "Audi", "BMW": "BMW", "HONDA": "Honda", "HYUNDAI": "Hyundai",
    "JAGUAR": "Jaguar", "LANDROVER": "Land Rover", "KIA": "Kia", "MERCEDES": "Mercedes",
    "MINI": "MINI", "NISSAN": "Nissan", "PEUGEOT": "Peugeot", "PORSCHE": "Porsche",
    "RENAULT": "Renault", "SEAT": "SEAT", "SKODA": "Škoda", "TESLA": "Tesla",
    "VOLKSWAGEN": "Volkswagen", "VOLVO": "Volvo", "FORD": "Ford", "OPEL": "Opel", "DS": "DS",
    "TOYOTA": "Toyota", "LEXUS": "Lexus", "CITROEN": "Citroën", "CUPRA": "Cupra",
    "VAUXHALL": "Vauxhall", "FIAT": "Fiat", "RIVIAN": "Rivian", "NIO": "NIO",
    "CHEVROLET": "Chevrolet", "GMC": "GMC", "CADILLAC": "Cadillac", "XPENG": "XPENG",
    "POLESTAR": "Polestar", "SUBARU": "Subaru", "JEEP": "Jeep", "MAZDA": "Mazda", "MG": "MG",
    "CHRYSLER": "Chrysler", "DODGE": "Dodge", "RAM": "Ram", "ALFAROMEO": "Alfa Romeo",
    "LANCIA": "Lancia", "LUCID": "Lucid", "BYD": "BYD", "DACIA": "Dacia", "ALPINE": "Alpine",
}  # fmt: skip


def model_for_vendor(vendor: str, pick: int) -> CarModel:
    """Return a catalog model of `vendor`, or a generic EV wearing its badge."""
    models = VENDORS.get(vendor)
    if models:
        return models[pick % len(models)]
    brand = VEHICLE_VENDORS.get(vendor, vendor.title())
    return CarModel(vendor, brand, "EV", 2023, 64.0, 11.0, 0.17, 16)
