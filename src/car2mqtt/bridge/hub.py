"""The vehicle hub: the one owner of what the bridge knows about each account and car.

Sources hand it what they read (`apply`, `finish_listing`, `set_link`, `read_failed`); the
command service hands it each step of a command (`record_command`). The hub merges (older data
never overwrites newer), names cars so no two share entity ids, keeps the known cars and their
removals, saves all of it through the store, and hands every change to its sinks as an event.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence

from car2mqtt.bridge.events import (
    AccountChanged,
    CommandProgress,
    Event,
    ListingDone,
    Sink,
    VehicleChanged,
    VehicleRemoved,
)
from car2mqtt.bridge.known import KnownAccount, KnownVehicle, PushMode, placeholder_state
from car2mqtt.bridge.privacy import EXACT, Privacy
from car2mqtt.bridge.saving import Saver
from car2mqtt.ha import discovery
from car2mqtt.ha.discovery import slugify
from car2mqtt.ha.entities import CONTROLS, SETTINGS
from car2mqtt.models import (
    CommandResult,
    LinkState,
    SmartCharging,
    VehicleRef,
    VehicleState,
    merge_newer,
    safe_id,
)
from car2mqtt.providers.base import ProviderSpec

_LOGGER = logging.getLogger(__name__)


class VehicleHub:
    """Holds every account and car, and tells the sinks what changed."""

    def __init__(
        self,
        accounts: Iterable[tuple[str, ProviderSpec, Callable[[], int]]],
        *,
        saver: Saver,
        stale_after_failures: int,
        privacy: Mapping[str, Privacy] | None = None,
    ) -> None:
        self._saver = saver
        # Per account: what of a position every sink, the store and the log may see.
        self._privacy = dict(privacy or {})
        store = saver.store
        self._sinks: list[Sink] = []
        self._accounts = {
            name: KnownAccount(name, spec, calls, stale_after_failures)
            for name, spec, calls in accounts
        }
        for name, (link, problem) in store.account_statuses().items():
            # What the last run saw, until this one knows better: status and HA agree.
            account = self._accounts.get(name)
            if account is not None and link in set(LinkState):
                account.link, account.problem, account.link_saved = LinkState(link), problem, True
        # The name each car was announced under (key -> (cloud's name then, name announced)):
        # two cars of one model must not share entity ids, and a name stays once given.
        self._names: dict[str, tuple[str, str]] = store.vehicle_names()
        # Commands an earlier run left open, per car: the command service follows them.
        self._unsettled: dict[str, list[CommandResult]] = {}
        commands = store.load_commands()
        for account in self._accounts.values():
            for ref in store.known_vehicles(account.name):
                # Placeholder until the first read: lets removal, republish and the stale
                # marking find the cars of an earlier run.
                vehicle = account.vehicles.setdefault(
                    ref.key, KnownVehicle(placeholder_state(ref), ref.vehicle_id, placeholder=True)
                )
                restored = [
                    c
                    for c in map(discovery.command_from_payload, commands.get(ref.key, {}).values())
                    if c is not None
                ]
                if restored and vehicle.last_command is None:
                    vehicle.last_command = max(restored, key=lambda c: c.at)
                    self._unsettled[ref.key] = [c for c in restored if not c.status.final]

    # ---- the read side ---------------------------------------------------------------------

    def subscribe(self, sink: Sink) -> None:
        """Give every later change to `sink`, after the sinks subscribed before it."""
        self._sinks.append(sink)

    def accounts(self) -> list[KnownAccount]:
        """Every configured account, in configuration order."""
        return list(self._accounts.values())

    def account(self, name: str) -> KnownAccount:
        """Return the account called `name` (KeyError if none)."""
        return self._accounts[name]

    def vehicle(self, key: str) -> KnownVehicle | None:
        """Return the car with `key` (None if the hub does not know it, or no longer)."""
        for account in self._accounts.values():
            found = account.vehicles.get(key)
            if found is not None:
                return found
        return None

    def account_of(self, vehicle: KnownVehicle) -> KnownAccount:
        """Return the account `vehicle` belongs to."""
        return self._accounts[vehicle.ref.account]

    def current(self, vehicle: KnownVehicle) -> bool:
        """Whether `vehicle` is still the hub's record of its car (not removed or replaced)."""
        account = self._accounts.get(vehicle.ref.account)
        return account is not None and account.vehicles.get(vehicle.key) is vehicle

    def find(self, provider: str, vehicle_segment: str) -> KnownVehicle | None:
        """Return the car a topic addresses as `<provider>/<safe vehicle id>`."""
        for account in self._accounts.values():
            if account.spec.name != provider:
                continue
            for entry in account.vehicles.values():
                if safe_id(entry.ref.vehicle_id) == vehicle_segment:
                    return entry
        return None

    def take_unsettled(self) -> list[tuple[KnownVehicle, CommandResult]]:
        """Hand over, once, the commands an earlier run left open."""
        found = [
            (vehicle, result)
            for key, results in self._unsettled.items()
            if (vehicle := self.vehicle(key)) is not None
            for result in results
        ]
        self._unsettled = {}
        return found

    @property
    def api_calls(self) -> int:
        """Cloud API calls made so far, over every account."""
        return sum(account.api_calls() for account in self._accounts.values())

    # ---- the write side: sources -----------------------------------------------------------

    async def apply(
        self, name: str, states: Sequence[VehicleState], *, force: bool = False
    ) -> set[str]:
        """Merge one batch (a page) of an account's cars; return the keys it carried."""
        account = self._accounts[name]
        # The one place location privacy applies: nothing downstream sees more.
        privacy = self._privacy.get(name, EXACT)
        states = [privacy.apply(state) for state in states]
        await self._assign_names(states)
        seen: set[str] = set()
        for state in states:
            key = state.ref.key
            seen.add(key)
            vehicle = account.vehicles.get(key)
            changed = True
            if vehicle is not None and not vehicle.placeholder:
                merged = merge_newer(vehicle.state, state)
                changed = merged != vehicle.state
                vehicle.state, vehicle.name = merged, self._name_of(merged)
            else:
                if vehicle is None:
                    vehicle = KnownVehicle(state, self._name_of(state))
                    account.vehicles[key] = vehicle
                else:
                    # The same object: a command an earlier run left open is followed on it.
                    vehicle.state, vehicle.placeholder = state, False
                    vehicle.name = self._name_of(state)
                _LOGGER.info(
                    "vehicle %s (%s) found on account %s", key, state.info.name, state.ref.account
                )
            await self._emit(VehicleChanged(vehicle, force=force, changed=changed))
        return seen

    async def finish_listing(self, name: str, seen: set[str], unreadable: Iterable[str]) -> None:
        """End a full read of an account: cars neither seen nor unreadable are gone."""
        account = self._accounts[name]
        # Listed by the cloud but unreadable this time: kept as they are, never removed. Only
        # a clean vehicle list may take a car away.
        kept = seen | {VehicleRef(account.spec.name, name, v).key for v in unreadable}
        for key in [k for k in account.vehicles if k not in kept]:
            await self._remove(account, key)
        await self._save_known(account)
        await self._emit(ListingDone(account))

    async def apply_smart(self, name: str, vehicle_id: str, smart: SmartCharging) -> None:
        """Merge a car's smart charging status that came on its own (a push)."""
        account = self._accounts[name]
        vehicle = account.vehicles.get(VehicleRef(account.spec.name, name, vehicle_id).key)
        if vehicle is None or vehicle.placeholder:
            return  # not listed yet: its status comes with its first read
        await self.apply(name, [vehicle.state.replace(smart=smart)])

    async def remove(self, name: str, vehicle_id: str) -> None:
        """Take away one car the cloud said is gone (a push), without a full listing."""
        account = self._accounts[name]
        key = VehicleRef(account.spec.name, name, vehicle_id).key
        if key in account.vehicles:
            await self._remove(account, key)
            await self._save_known(account)

    async def set_push(
        self, name: str, mode: PushMode, detail: str | None, *, delivered_at: float | None = None
    ) -> None:
        """Note how the account's changes arrive; a change of mode goes to the sinks."""
        account = self._accounts[name]
        before = account.last_push_at
        if delivered_at is not None:
            account.last_push_at = delivered_at
        # The time of the last delivery is news once a minute, not with every delivery.
        news = delivered_at is not None and (before is None or delivered_at - before >= 60)
        if (mode, detail) == (account.push, account.push_detail) and not news:
            return
        account.push, account.push_detail = mode, detail
        await self._emit(AccountChanged(account))

    async def _remove(self, account: KnownAccount, key: str) -> None:
        vehicle = account.vehicles.pop(key)
        _LOGGER.info(
            "vehicle %s is gone from %s; removing it from Home Assistant", key, account.name
        )
        self._names.pop(key, None)
        await self._emit(VehicleRemoved(vehicle))

    async def _save_known(self, account: KnownAccount) -> None:
        name, refs = account.name, [v.ref for v in account.vehicles.values()]
        store = self._saver.store
        await self._saver.save("the known vehicles", lambda: store.save_vehicles(name, refs))

    def read_ok(self, name: str) -> bool:
        """Note a good read of the cloud; return whether the account's data was stale."""
        account = self._accounts[name]
        was_stale = account.stale
        account.failures = 0
        return was_stale

    async def read_failed(
        self,
        name: str,
        *,
        restore: int | None = None,
        error: str | None = None,
        at: float | None = None,
    ) -> int:
        """Note a failed read; return how many failed in a row. Staleness is announced once.

        `restore`: the count before a read that failed part-way, after its first part had
        reset it (`read_ok`); the cars that part showed as fresh are marked stale again.
        """
        account = self._accounts[name]
        if restore is not None:
            account.failures = restore
        account.failures += 1
        if error is not None:
            account.last_error, account.last_error_at = error, at
        threshold = account.stale_after_failures
        if account.failures == threshold:
            _LOGGER.warning("account %s: marking its vehicles stale until the cloud recovers", name)
            await self._emit(AccountChanged(account))
        elif restore is not None and account.failures > threshold:
            await self._emit(AccountChanged(account))
        return account.failures

    async def set_link(
        self,
        name: str,
        link: LinkState,
        problem: str | None,
        *,
        config_fix: bool = False,
        announce: bool = True,
    ) -> bool:
        """Record a link state; tell the sinks if it changed (unless `announce` is False)."""
        account = self._accounts[name]
        unchanged = account.link is link and account.problem == problem
        if unchanged and account.link_saved:
            return False
        # Saved even when unchanged from the default, so `car2mqtt status` reads what the
        # bridge sees (a recovered link equals the default and was once never saved).
        store = self._saver.store
        account.link_saved = await self._saver.save(
            "account status", lambda: store.save_account_status(name, link.value, problem)
        )
        if unchanged:
            return False
        account.link, account.problem = link, problem
        if link is LinkState.RELINK_REQUIRED and config_fix:
            _LOGGER.error(
                "account %s: %s. Check its client_id and client_secret in the configuration",
                name,
                problem,
            )
        elif link is LinkState.RELINK_REQUIRED:
            _LOGGER.error(
                "account %s needs re-linking: %s. Run: car2mqtt link %s --account %s",
                name,
                problem,
                account.spec.name,
                name,
            )
        else:
            _LOGGER.info("account %s: link repaired", name)
        if announce:
            await self._emit(AccountChanged(account))
        return True

    # ---- the write side: commands ----------------------------------------------------------

    async def record_command(
        self, vehicle: KnownVehicle, result: CommandResult, *, save: bool = True
    ) -> None:
        """Note a step of a command to `vehicle`; `save`: keep it for a restart to follow."""
        vehicle.last_command = result
        if not self.current(vehicle):
            return
        key, payload = vehicle.key, discovery.command_payload(result)
        control = control_of(result.command)
        # Saved per control, so a restart (even kill -9) follows a pending action to its end,
        # and never leaves "sent" standing for ever.
        if save:
            store = self._saver.store
            await self._saver.save("commands", lambda: store.save_command(key, control, payload))
        await self._emit(CommandProgress(vehicle, result))

    # ---- inside ----------------------------------------------------------------------------

    async def _emit(self, event: Event) -> None:
        for sink in self._sinks:
            try:
                await sink.on_event(event)
            except Exception:
                # One sink's bug must not silence the others, nor stop the source.
                _LOGGER.exception("unexpected error in %s", type(sink).__name__)

    def _name_of(self, state: VehicleState) -> str:
        """Return the name `state`'s car is announced under (its own, or made unique)."""
        known = self._names.get(state.ref.key)
        if known is not None and known[0] == state.info.name:
            return known[1]
        return state.info.name

    async def _assign_names(self, states: Sequence[VehicleState]) -> None:
        """Name new and renamed cars so no two cars share entity ids; keep names once given.

        A car keeps the cloud's name unless another car has it (compared as entity-id slugs):
        then the newcomer, or every newcomer of one batch that shares it, takes a short suffix
        from its vehicle id ("Kia EV6 3f9a"). Home Assistant would otherwise make `_2` ids in
        discovery order, which can swap between restarts.
        """
        fresh = [
            st
            for st in states
            if st.info.name and self._names.get(st.ref.key, ("",))[0] != st.info.name
        ]
        if not fresh:
            return
        renamed = {st.ref.key for st in fresh}
        taken = {slugify(n): k for k, (_, n) in self._names.items() if k not in renamed}
        groups: dict[str, list[VehicleState]] = {}
        for st in fresh:
            groups.setdefault(slugify(st.info.name), []).append(st)
        changed: dict[str, tuple[str, str]] = {}
        for slug, group in groups.items():
            clash = len(group) > 1 or slug in taken
            for st in group:
                name = st.info.name
                if clash:
                    name = _unique_name(name, st.ref.vehicle_id, taken)
                taken[slugify(name)] = st.ref.key
                changed[st.ref.key] = (st.info.name, name)
                if name != st.info.name:
                    _LOGGER.info(
                        "vehicle %s: another car is also called %r; announcing it as %r",
                        st.ref.key,
                        st.info.name,
                        name,
                    )
        self._names.update(changed)
        store = self._saver.store
        await self._saver.save("vehicle names", lambda: store.save_vehicle_names(changed))


def control_of(command: str) -> str:
    """Return the control that sends `command` (its own name if none does)."""
    for control, accepted in CONTROLS.items():
        if any(c.value == command for c in accepted.values()):
            return control
    for control, setting in SETTINGS.items():
        if setting.command.value == command:
            return control
    return command


def _unique_name(name: str, vehicle_id: str, taken: Mapping[str, str]) -> str:
    """Return `name` with the shortest suffix of `vehicle_id` that no other car's slug has."""
    tail = slugify(vehicle_id).replace("_", "") or "car"
    for length in (4, 6, 8, len(tail)):
        candidate = f"{name} {tail[-length:]}"
        if slugify(candidate) not in taken:
            return candidate
    n = 2
    while slugify(f"{name} {tail} {n}") in taken:
        n += 1
    return f"{name} {tail} {n}"
