"""Location privacy: what is left of a car's position before any sink sees it.

The hub applies `Privacy.apply` to every state a source hands it (`VehicleHub.apply`), before
it merges, keeps or announces it: MQTT, history, the web UI, the logs and the store see only
the reduced state. Modes (`LocationMode`): `exact` as read, `coarse` rounded to a grid of
`grid_m` metres (heading and altitude dropped, the accuracy set to match), `zone` only the
name of the zone from `zones:` the car is in (or `not_home`), `off` nothing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from car2mqtt.history.model import Place, ZoneArea, zone_of
from car2mqtt.models import NOT_HOME, Location, LocationMode, VehicleState

METRES_PER_DEGREE = 111_320.0  # along a meridian, and along the equator


@dataclass(frozen=True, slots=True)
class Privacy:
    """One account's location privacy: its mode, the grid, per-car modes and the zones."""

    mode: LocationMode = LocationMode.EXACT
    grid_m: float = 1000.0
    # Per car, by vehicle id or by the car's name as the cloud gives it.
    cars: Mapping[str, LocationMode] = field(default_factory=lambda: MappingProxyType({}))
    zones: tuple[ZoneArea, ...] = ()

    def mode_for(self, state: VehicleState) -> LocationMode:
        """Return the mode for `state`'s car: its own if it has one, else the account's."""
        for name in (state.ref.vehicle_id, state.info.name):
            if name in self.cars:
                return self.cars[name]
        return self.mode

    def apply(self, state: VehicleState) -> VehicleState:
        """Return `state` with no more of its position than the mode allows."""
        mode = self.mode_for(state)
        fix = state.location
        if mode is LocationMode.EXACT:
            if state.location_mode is mode and state.zone is None:
                return state  # as a provider hands it in: no copy (10,000 cars a poll)
            return state.replace(location_mode=mode, zone=None)
        if mode is LocationMode.OFF:
            return state.replace(location_mode=mode, location=None, zone=None)
        if mode is LocationMode.ZONE:
            zone = state.zone if state.location_mode is LocationMode.ZONE else None
            if fix is not None:
                zone = zone_of(fix.latitude, fix.longitude, self.zones) or NOT_HOME
            return state.replace(location_mode=mode, location=None, zone=zone)
        coarse = None if fix is None else coarsen(fix, self.grid_m)
        return state.replace(location_mode=mode, location=coarse, zone=None)

    def place(
        self, mode: LocationMode, latitude: float | None, longitude: float | None
    ) -> Place | None:
        """Return what `mode` leaves of a point a cloud reported beside the states (a trip's end).

        The states' own positions are reduced by `apply`; this is for the few that reach a
        sink another way (a dongle cloud's trip list), so they are reduced the same way.
        """
        if mode is LocationMode.OFF or latitude is None or longitude is None:
            return None
        if mode is LocationMode.EXACT:
            return Place(latitude, longitude, zone_of(latitude, longitude, self.zones))
        if mode is LocationMode.ZONE:
            return Place(zone=zone_of(latitude, longitude, self.zones))
        coarse = coarsen(Location(latitude=latitude, longitude=longitude), self.grid_m)
        if coarse is None:
            return None
        zone = zone_of(coarse.latitude, coarse.longitude, self.zones)
        return Place(coarse.latitude, coarse.longitude, zone)


EXACT = Privacy()


def coarsen(fix: Location, grid_m: float) -> Location | None:
    """Return `fix` snapped to the nearest point of a `grid_m` grid (None if not finite).

    Snapping twice gives the same point; the accuracy is half the cell's diagonal.
    """
    if not (math.isfinite(fix.latitude) and math.isfinite(fix.longitude)):
        return None
    lat_step = grid_m / METRES_PER_DEGREE
    latitude = max(-90.0, min(90.0, round(fix.latitude / lat_step) * lat_step))
    # A degree of longitude shrinks towards the poles: the cell stays about grid_m wide.
    shrink = max(math.cos(math.radians(latitude)), 0.01)
    lon_step = grid_m / (METRES_PER_DEGREE * shrink)
    longitude = round(fix.longitude / lon_step) * lon_step
    longitude = (longitude + 180.0) % 360.0 - 180.0
    return Location(
        latitude=round(latitude, 6),
        longitude=round(longitude, 6),
        updated_at=fix.updated_at,
        accuracy_m=round(grid_m * math.sqrt(2) / 2),
    )
