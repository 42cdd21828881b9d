"""What the bridge's core knows about Enode: data, read by the provider and its account model."""

from __future__ import annotations

from car2mqtt.providers.base import Command, Grant, ProviderSpec

__all__ = ["SPEC"]

SPEC = ProviderSpec(
    name="enode",
    title="Enode",
    grant=Grant.CLIENT_CREDENTIALS,
    # Enode refreshes its own cache about every 7 minutes, every 2 while charging: polling
    # faster only burns quota (reference/enode.md §6).
    poll_interval_s=300.0,
    active_poll_interval_s=120.0,
    min_poll_interval_s=60.0,
    # Every command Enode 2024-10-01 has for a vehicle. It has none for the charge limit.
    commands=frozenset(Command),
    min_poll_reason=(
        "Enode refreshes its own cache about every 7 minutes, so polling faster only burns "
        "API quota"
    ),
    vehicle_path=r"/vehicles/(?!actions/)([^/]+)/",
)
