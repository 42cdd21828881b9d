"""Every delay the bridge uses, in one frozen record: tests shrink them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Timing:
    """Every delay the bridge uses; tests shrink them, users get the providers' defaults."""

    poll_interval_s: float | None = None  # None: the provider's default
    active_poll_interval_s: float | None = None
    backoff_base_s: float = 30.0
    backoff_max_s: float = 900.0
    relink_retry_s: float = 900.0
    # While an account needs re-linking, how often to look for a grant `car2mqtt link` saved:
    # a local SQLite read, so the link comes back seconds after the user finished.
    relink_check_s: float = 5.0
    command_poll_s: float = 15.0
    command_timeout_s: float = 40 * 60.0
    after_command_poll_s: float = 45.0
    heartbeat_s: float = 300.0
    health_s: float = 60.0  # how often `<base>/bridge/health` is published
    birth_jitter_s: float = 2.0
    stale_after_failures: int = 2
    # A refresh makes the cloud wake the car: one a minute per car, whatever HA sends.
    refresh_min_interval_s: float = 60.0
    # A state file that cannot be written (disk full) is said once per this many seconds.
    store_error_every_s: float = 300.0
    # Webhooks: nothing received for this long and polling takes over; while they arrive, a
    # safety listing this often, and a command's action read this much less often.
    push_watchdog_s: float = 900.0
    safety_poll_s: float = 3600.0
    pushed_command_poll_factor: float = 10.0
