"""The state store, on real SQLite files under tmp_path."""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import sqlite3
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from car2mqtt.errors import StoreError
from car2mqtt.models import VehicleRef
from car2mqtt.store import APPLICATION_ID, MIGRATIONS, SCHEMA_VERSION, Store

TOKEN = {"access_token": "a1", "refresh_token": "r1", "expires_at": 1_700_000_000.5}


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def raw(path: Path) -> sqlite3.Connection:
    """A plain sqlite3 connection, to look under the store's API (closed by the caller)."""
    return sqlite3.connect(path, isolation_level=None)


def pragma(path: Path, name: str) -> object:
    conn = raw(path)
    try:
        return conn.execute(f"PRAGMA {name}").fetchone()[0]
    finally:
        conn.close()


@pytest.fixture
def db(tmp_path: Path) -> Path:
    """Where the state file goes: in a directory that does not exist yet."""
    return tmp_path / "state" / "car2mqtt.db"


@pytest.fixture
def store(db: Path) -> Iterator[Store]:
    """An open store on a fresh file."""
    with Store.open(db) as opened:
        yield opened


def reopened(db: Path) -> Store:
    return Store.open(db)


# -- file, directory and permissions -----------------------------------------------------


def test_open_creates_private_parent_dirs_and_file(tmp_path: Path) -> None:
    db = tmp_path / "a" / "b" / "state.db"
    with Store.open(db):
        pass
    assert db.is_file()
    assert mode_of(db) == 0o600
    # Both created directories are private; the pre-existing tmp_path is left alone.
    assert mode_of(db.parent) & 0o077 == 0
    assert mode_of(db.parent.parent) & 0o077 == 0


def test_file_is_0600_even_with_a_permissive_umask(db: Path) -> None:
    old = os.umask(0)
    try:
        with Store.open(db):
            assert mode_of(db) == 0o600
    finally:
        os.umask(old)
    assert mode_of(db) == 0o600


def test_reopen_tightens_a_loose_file_and_warns(db: Path, caplog: pytest.LogCaptureFixture) -> None:
    with Store.open(db) as s:
        s.set_meta("kept", "yes")
    db.chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="car2mqtt.store"), Store.open(db) as s:
        assert s.get_meta("kept") == "yes"
    assert mode_of(db) == 0o600
    assert any(str(db) in r.getMessage() and "0644" in r.getMessage() for r in caplog.records)


def test_a_private_file_is_reopened_without_warning(
    db: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with Store.open(db):
        pass
    with caplog.at_level(logging.WARNING, logger="car2mqtt.store"), Store.open(db):
        pass
    assert caplog.records == []


def test_no_side_files_are_left_after_writes(store: Store, db: Path) -> None:
    store.save_token("acct", TOKEN)
    store.save_state("k", "t", {"v": 1})
    assert sorted(p.name for p in db.parent.iterdir()) == [db.name]
    assert pragma(db, "journal_mode") == "delete"


def test_pragmas_are_set_on_the_store_connection(store: Store) -> None:
    conn = store._connection()
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1


# -- schema versions ---------------------------------------------------------------------


def test_fresh_file_is_migrated_to_the_latest_version(db: Path) -> None:
    with Store.open(db):
        pass
    assert SCHEMA_VERSION == len(MIGRATIONS) >= 1
    assert pragma(db, "user_version") == SCHEMA_VERSION
    assert pragma(db, "application_id") == APPLICATION_ID


def test_reopening_a_current_file_keeps_data_and_version(db: Path) -> None:
    with Store.open(db) as s:
        s.set_meta("x", "1")
    with Store.open(db) as s:
        assert s.get_meta("x") == "1"
    assert pragma(db, "user_version") == SCHEMA_VERSION


def test_file_from_a_newer_car2mqtt_is_refused_and_left_untouched(db: Path) -> None:
    with Store.open(db):
        pass
    conn = raw(db)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    before = db.read_bytes()
    with pytest.raises(StoreError, match="newer car2mqtt") as info:
        Store.open(db)
    assert str(db) in str(info.value)
    assert db.read_bytes() == before


def test_foreign_sqlite_database_is_refused(db: Path) -> None:
    db.parent.mkdir()
    conn = raw(db)
    conn.execute("CREATE TABLE photos (id INTEGER PRIMARY KEY)")
    conn.close()
    with pytest.raises(StoreError, match="not a car2mqtt state file") as info:
        Store.open(db)
    assert str(db) in str(info.value)
    assert pragma(db, "user_version") == 0


def test_database_of_another_application_is_refused(db: Path) -> None:
    db.parent.mkdir()
    conn = raw(db)
    conn.execute("PRAGMA application_id = 42")
    conn.close()
    with pytest.raises(StoreError, match="another application") as info:
        Store.open(db)
    assert str(db) in str(info.value)


def test_two_stores_opening_a_fresh_file_at_once_both_succeed(db: Path) -> None:
    errors: list[BaseException] = []
    stores: list[Store] = []
    lock = threading.Lock()

    def open_one() -> None:
        try:
            s = Store.open(db)
        except BaseException as exc:  # reported by the assert below
            errors.append(exc)
        else:
            with lock:
                stores.append(s)

    threads = [threading.Thread(target=open_one) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for s in stores:
        s.close()
    assert errors == []
    assert len(stores) == 4
    assert pragma(db, "user_version") == SCHEMA_VERSION


# -- files that cannot be used -----------------------------------------------------------


def test_garbage_file_gives_store_error_naming_it(db: Path) -> None:
    db.parent.mkdir()
    db.write_bytes(b"this is not an SQLite database, just some bytes\n" * 100)
    with pytest.raises(StoreError) as info:
        Store.open(db)
    assert str(db) in str(info.value)
    assert not isinstance(info.value, sqlite3.Error)
    assert "not a database" in str(info.value)


@pytest.mark.parametrize("where", ["under_a_file", "is_a_directory"])
def test_unusable_location_gives_store_error(tmp_path: Path, where: str) -> None:
    if where == "under_a_file":
        blocker = tmp_path / "plain-file"
        blocker.write_text("x")
        db = blocker / "state.db"
    else:
        db = tmp_path / "a-directory"
        db.mkdir()
    with pytest.raises(StoreError) as info:
        Store.open(db)
    assert str(db) in str(info.value)


def test_closed_store_raises_store_error(db: Path) -> None:
    s = Store.open(db)
    s.close()
    s.close()  # closing twice is harmless
    with pytest.raises(StoreError, match="closed"):
        s.load_token("acct")
    with pytest.raises(StoreError, match="closed"):
        s.save_token("acct", TOKEN)


def test_damaged_json_gives_store_error(store: Store, db: Path) -> None:
    store.save_token("acct", TOKEN)
    conn = raw(db)
    conn.execute("UPDATE tokens SET token = '[1, 2'")
    conn.close()
    with pytest.raises(StoreError, match="damaged token") as info:
        store.load_token("acct")
    assert str(db) in str(info.value)


# -- tokens ------------------------------------------------------------------------------


def test_token_round_trips_and_survives_reopen(store: Store, db: Path) -> None:
    assert store.load_token("acct") is None
    store.save_token("acct", TOKEN)
    assert store.load_token("acct") == TOKEN
    store.close()
    with reopened(db) as s:
        assert s.load_token("acct") == TOKEN
        assert s.load_token("other") is None


def test_saving_a_token_replaces_the_previous_one(store: Store) -> None:
    store.save_token("acct", TOKEN)
    store.save_token("acct", {"access_token": "a2"})
    assert store.load_token("acct") == {"access_token": "a2"}


def test_tokens_are_per_account_and_can_be_deleted(store: Store, db: Path) -> None:
    store.save_token("one", {"n": 1})
    store.save_token("two", {"n": 2})
    store.delete_token("one")
    store.delete_token("never-saved")
    assert store.load_token("one") is None
    assert store.load_token("two") == {"n": 2}
    store.close()
    with reopened(db) as s:
        assert s.load_token("one") is None
        assert s.load_token("two") == {"n": 2}


def test_loaded_token_is_a_copy(store: Store) -> None:
    store.save_token("acct", TOKEN)
    got = store.load_token("acct")
    assert got is not None
    got["access_token"] = "changed"
    assert store.load_token("acct") == TOKEN


def test_token_is_visible_to_a_second_store_while_the_first_stays_open(
    store: Store, db: Path
) -> None:
    store.save_token("acct", TOKEN)
    with Store.open(db) as second:
        assert second.load_token("acct") == TOKEN


def test_token_is_on_disk_when_save_returns_even_if_the_process_dies(db: Path) -> None:
    # os._exit skips close() and every cleanup: only what save_token committed remains.
    code = (
        "import os, sys; from pathlib import Path; from car2mqtt.store import Store; "
        "s = Store.open(Path(sys.argv[1])); "
        "s.save_token('acct', {'access_token': 'from-child'}); os._exit(0)"
    )
    subprocess.run([sys.executable, "-c", code, str(db)], check=True, timeout=60)
    with Store.open(db) as s:
        assert s.load_token("acct") == {"access_token": "from-child"}


def test_a_token_that_cannot_be_saved_leaves_the_old_one(store: Store) -> None:
    store.save_token("acct", TOKEN)
    with pytest.raises(TypeError):
        store.save_token("acct", {"bad": object()})
    with pytest.raises(ValueError, match="JSON"):
        store.save_token("acct", {"bad": float("nan")})
    assert store.load_token("acct") == TOKEN


def test_a_write_blocked_by_another_writer_waits_then_commits(store: Store, db: Path) -> None:
    blocker = raw(db)
    blocker.execute("BEGIN IMMEDIATE")
    done = threading.Event()

    def write() -> None:
        store.save_token("acct", TOKEN)
        done.set()

    t = threading.Thread(target=write)
    t.start()
    assert not done.wait(0.3)  # waiting on the other writer, not failing
    blocker.execute("ROLLBACK")
    blocker.close()
    t.join(10)
    assert done.is_set()
    assert store.load_token("acct") == TOKEN


# -- vehicles ----------------------------------------------------------------------------


def car(vehicle_id: str, account: str = "acct", provider: str = "enode") -> VehicleRef:
    return VehicleRef(provider=provider, account=account, vehicle_id=vehicle_id)


def test_vehicles_round_trip_in_order_and_survive_reopen(store: Store, db: Path) -> None:
    assert store.known_vehicles("acct") == []
    refs = [car("v3"), car("v1"), car("v2", provider="xee")]
    store.save_vehicles("acct", iter(refs))
    assert store.known_vehicles("acct") == refs
    store.close()
    with reopened(db) as s:
        assert s.known_vehicles("acct") == refs


def test_save_vehicles_replaces_rather_than_appends(store: Store) -> None:
    store.save_vehicles("acct", [car("v1"), car("v2")])
    store.save_vehicles("acct", [car("v2"), car("v3")])
    assert store.known_vehicles("acct") == [car("v2"), car("v3")]
    store.save_vehicles("acct", [])
    assert store.known_vehicles("acct") == []


def test_vehicles_are_per_account(store: Store) -> None:
    store.save_vehicles("a", [car("v1", account="a")])
    store.save_vehicles("b", [car("v2", account="b")])
    store.save_vehicles("a", [])
    assert store.known_vehicles("a") == []
    assert store.known_vehicles("b") == [car("v2", account="b")]


def test_duplicate_vehicles_are_kept_once(store: Store) -> None:
    store.save_vehicles("acct", [car("v1"), car("v2"), car("v1")])
    assert store.known_vehicles("acct") == [car("v1"), car("v2")]


def test_vehicle_of_another_account_is_refused_and_changes_nothing(store: Store) -> None:
    store.save_vehicles("acct", [car("v1")])
    with pytest.raises(ValueError, match="belongs to account 'other'"):
        store.save_vehicles("acct", [car("v2"), car("v3", account="other")])
    assert store.known_vehicles("acct") == [car("v1")]


# -- published discovery -----------------------------------------------------------------


def test_published_round_trips_and_survives_reopen(store: Store, db: Path) -> None:
    assert store.published() == {}
    store.record_published("homeassistant/device/car_v1/config", ["battery", "range"])
    store.record_published("homeassistant/device/car_v2/config", iter(["odometer"]))
    store.record_published("homeassistant/device/empty/config", [])
    expected = {
        "homeassistant/device/car_v1/config": frozenset({"battery", "range"}),
        "homeassistant/device/car_v2/config": frozenset({"odometer"}),
        "homeassistant/device/empty/config": frozenset(),
    }
    assert store.published() == expected
    store.close()
    with reopened(db) as s:
        assert s.published() == expected


def test_record_published_replaces_the_topic_keys(store: Store) -> None:
    store.record_published("t", ["a", "b"])
    store.record_published("t", ["b", "c", "c"])
    assert store.published() == {"t": frozenset({"b", "c"})}


def test_forget_published(store: Store, db: Path) -> None:
    store.record_published("t1", ["a"])
    store.record_published("t2", ["b"])
    store.forget_published("t1")
    store.forget_published("never")
    assert store.published() == {"t2": frozenset({"b"})}
    store.close()
    with reopened(db) as s:
        assert s.published() == {"t2": frozenset({"b"})}


# -- last states -------------------------------------------------------------------------


def test_states_round_trip_and_survive_reopen(store: Store, db: Path) -> None:
    assert store.load_states() == {}
    payload = {"battery_pct": 81.5, "charging": True, "nested": {"a": [1, None]}, "s": "é"}
    store.save_state("enode_v1", "car2mqtt/enode_v1/state", payload)
    store.save_state("enode_v2", "car2mqtt/enode_v2/state", {})
    expected = {
        "enode_v1": ("car2mqtt/enode_v1/state", payload),
        "enode_v2": ("car2mqtt/enode_v2/state", {}),
    }
    assert store.load_states() == expected
    store.close()
    with reopened(db) as s:
        assert s.load_states() == expected


def test_save_state_replaces_topic_and_payload(store: Store) -> None:
    store.save_state("k", "old/topic", {"v": 1})
    store.save_state("k", "new/topic", {"v": 2})
    assert store.load_states() == {"k": ("new/topic", {"v": 2})}


def test_delete_state(store: Store, db: Path) -> None:
    store.save_state("k1", "t1", {"v": 1})
    store.save_state("k2", "t2", {"v": 2})
    store.delete_state("k1")
    store.delete_state("never")
    assert store.load_states() == {"k2": ("t2", {"v": 2})}
    store.close()
    with reopened(db) as s:
        assert s.load_states() == {"k2": ("t2", {"v": 2})}


# -- removals ----------------------------------------------------------------------------


def test_a_removal_forgets_the_car_and_is_pending_until_finished(store: Store, db: Path) -> None:
    store.record_published("hass/car_k1/config", ["a"])
    store.record_published("hass/car_k2/config", ["b"])
    store.save_state("k1", "car/k1/state", {"v": 1})
    store.begin_removal("k1", ["hass/car_k1/config", "car/k1/state", "car/k1/state"])
    assert store.published() == {"hass/car_k2/config": frozenset({"b"})}
    assert store.load_states() == {}
    store.close()
    with reopened(db) as s:  # durable: a restart still knows what to clear
        assert s.pending_removals() == {"k1": ["hass/car_k1/config", "car/k1/state"]}
        s.finish_removal("k1")
        s.finish_removal("never")
        assert s.pending_removals() == {}


def test_a_file_of_schema_version_1_gains_the_removals_table_and_keeps_its_data(
    db: Path,
) -> None:
    db.parent.mkdir()
    conn = raw(db)
    for statement in MIGRATIONS[0].split(";"):
        if statement.strip():
            conn.execute(statement)
    conn.execute("PRAGMA user_version = 1")
    conn.execute("INSERT INTO meta (name, value) VALUES ('x', '1')")
    conn.close()
    with Store.open(db) as s:
        assert s.get_meta("x") == "1"
        s.begin_removal("k", ["t"])
        assert s.pending_removals() == {"k": ["t"]}
    assert pragma(db, "user_version") == SCHEMA_VERSION


# -- account status ----------------------------------------------------------------------


def test_account_status_round_trips_replaces_and_survives_reopen(store: Store, db: Path) -> None:
    assert store.account_statuses() == {}
    store.save_account_status("a", "ok", None)
    store.save_account_status("b", "relink_required", "refresh token expired")
    store.save_account_status("a", "relink_required", "consent revoked")
    store.save_account_status("b", "ok", None)
    expected = {"a": ("relink_required", "consent revoked"), "b": ("ok", None)}
    assert store.account_statuses() == expected
    store.close()
    with reopened(db) as s:
        assert s.account_statuses() == expected


# -- meta --------------------------------------------------------------------------------


def test_meta_round_trips_replaces_and_survives_reopen(store: Store, db: Path) -> None:
    assert store.get_meta("instance_id") is None
    store.set_meta("instance_id", "abc")
    store.set_meta("instance_id", "def")
    store.set_meta("other", "")
    store.set_meta("gone", "x")
    store.delete_meta("gone")
    store.close()
    with reopened(db) as s:
        assert s.get_meta("instance_id") == "def"
        assert s.get_meta("other") == ""
        assert s.get_meta("gone") is None


# -- several stores on one file ----------------------------------------------------------


def test_concurrent_stores_see_each_others_committed_writes(db: Path) -> None:
    with Store.open(db) as one, Store.open(db) as two:
        one.save_token("acct", TOKEN)
        assert two.load_token("acct") == TOKEN
        two.save_vehicles("acct", [car("v1")])
        assert one.known_vehicles("acct") == [car("v1")]
        one.record_published("t", ["a"])
        assert two.published() == {"t": frozenset({"a"})}
        two.save_state("k", "t", {"v": 1})
        assert one.load_states() == {"k": ("t", {"v": 1})}
        one.save_account_status("acct", "ok", None)
        assert two.account_statuses() == {"acct": ("ok", None)}
        two.set_meta("m", "v")
        assert one.get_meta("m") == "v"
        one.delete_token("acct")
        assert two.load_token("acct") is None


def test_one_store_shared_by_threads(store: Store) -> None:
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            for i in range(20):
                store.save_state(f"k{n}", f"t{n}", {"i": i})
                store.load_states()
        except BaseException as exc:  # reported by the assert below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert store.load_states() == {f"k{n}": (f"t{n}", {"i": 19}) for n in range(4)}


def test_repr_names_the_file(db: Path) -> None:
    s = Store.open(db)
    assert str(db) in repr(s)
    s.close()
    assert "closed" in repr(s)


def test_save_many_writes_everything_in_one_go(tmp_path: Path) -> None:
    path = tmp_path / "many.db"
    with Store.open(path) as store:
        store.record_published("old/topic", ["a"])
        store.save_many(
            published={"t/1": ["x", "y"], "old/topic": ["b"]},
            states={"k1": ("s/1", {"battery": 50}), "k2": ("s/2", {"battery": 60})},
        )
        store.save_many()  # nothing to write is fine
    with Store.open(path) as again:
        assert again.published() == {
            "t/1": frozenset({"x", "y"}),
            "old/topic": frozenset({"b"}),
        }
        assert again.load_states() == {
            "k1": ("s/1", {"battery": 50}),
            "k2": ("s/2", {"battery": 60}),
        }


# -- damage, ownership, names and commands --------------------------------------------------


def test_a_page_overwritten_in_the_middle_is_caught_at_open(db: Path) -> None:
    with Store.open(db) as store:
        for i in range(300):
            store.save_state(f"k{i}", "t", {"v": "x" * 300})
    data = bytearray(db.read_bytes())
    data[4096 * 5 : 4096 * 6] = bytes(range(256)) * 16
    db.write_bytes(bytes(data))
    with pytest.raises(StoreError, match="is damaged") as info:
        Store.open(db)
    assert f"Move it aside (mv {db} {db}.damaged)" in str(info.value)
    assert "may need re-linking" in str(info.value)


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can give a file to another user")
def test_a_file_of_another_user_warns_when_run_as_root(
    db: Path, caplog: pytest.LogCaptureFixture
) -> None:
    Store.open(db).close()
    os.chown(db, 12345, 12345)
    caplog.set_level(logging.WARNING)
    Store.open(db).close()
    assert any("belongs to uid 12345" in r.getMessage() for r in caplog.records)


def test_names_and_commands_round_trip_and_go_with_a_removal(store: Store) -> None:
    store.save_vehicle_names({"enode_a": ("Kia EV6", "Kia EV6 1a2b")})
    store.save_command("enode_a", "refresh", {"command": "refresh", "status": "sent"})
    store.save_command("enode_a", "charging", {"command": "start_charging", "status": "pending"})
    assert store.vehicle_names() == {"enode_a": ("Kia EV6", "Kia EV6 1a2b")}
    # One per control: a refresh after a charging command must not hide the charging one.
    assert store.load_commands() == {
        "enode_a": {
            "refresh": {"command": "refresh", "status": "sent"},
            "charging": {"command": "start_charging", "status": "pending"},
        }
    }
    store.begin_removal("enode_a", ["t"])
    assert store.vehicle_names() == {}
    assert store.load_commands() == {}


# -- the writer thread (Store.run) ----------------------------------------------------------


async def test_run_executes_off_the_event_loop_thread_and_returns_the_result(
    store: Store,
) -> None:
    loop_thread = threading.get_ident()

    def write() -> tuple[int, str]:
        store.save_token("acct", TOKEN)
        return threading.get_ident(), threading.current_thread().name

    ident, name = await store.run(write)
    assert ident != loop_thread
    assert name.startswith("car2mqtt-store")
    # One writer: every call runs on that same thread.
    assert await store.run(threading.get_ident) == ident
    assert await store.run(lambda: store.load_token("acct")) == TOKEN


async def test_run_keeps_the_order_calls_were_made_in(store: Store) -> None:
    seen: list[int] = []

    def write(i: int) -> int:
        store.set_meta("last", str(i))
        seen.append(i)
        return i

    got = await asyncio.gather(*(store.run(functools.partial(write, i)) for i in range(50)))
    assert got == list(range(50))
    assert seen == list(range(50))
    assert store.get_meta("last") == "49"


async def test_run_raises_what_the_write_raised(store: Store, db: Path) -> None:
    store.save_token("acct", TOKEN)
    conn = raw(db)
    conn.execute("UPDATE tokens SET token = '[1, 2'")
    conn.close()
    with pytest.raises(StoreError, match="damaged token") as info:
        await store.run(lambda: store.load_token("acct"))
    assert str(db) in str(info.value)
    with pytest.raises(ValueError, match="belongs to account 'other'"):
        await store.run(lambda: store.save_vehicles("acct", [car("v1", account="other")]))
    await store.run(lambda: store.set_meta("still", "works"))  # a failure stops nothing
    assert store.get_meta("still") == "works"


async def test_the_loop_runs_on_while_a_write_waits_for_another_connection(
    store: Store, db: Path
) -> None:
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    blocker = raw(db)
    blocker.execute("BEGIN IMMEDIATE")  # holds the write lock: our write waits (busy timeout)
    async with asyncio.TaskGroup() as tg:
        ticking = tg.create_task(ticker())
        saving = tg.create_task(store.run(lambda: store.save_token("acct", TOKEN)))
        await asyncio.sleep(0.5)
        assert not saving.done()  # waiting on the other writer, not failing
        assert ticks >= 20  # ~50 ticks of 10 ms in those 0.5 s: the loop never stalled
        blocker.execute("ROLLBACK")
        blocker.close()
        await asyncio.wait_for(saving, 10)
        ticking.cancel()
    assert store.load_token("acct") == TOKEN


async def test_close_finishes_the_queued_writes_first(db: Path) -> None:
    store = Store.open(db)
    blocker = raw(db)
    blocker.execute("BEGIN IMMEDIATE")
    # Twenty writes queue up behind the first, which waits for the blocker.
    writes = [
        asyncio.ensure_future(store.run(functools.partial(store.set_meta, f"m{i}", str(i))))
        for i in range(20)
    ]
    await asyncio.sleep(0.1)
    assert not any(w.done() for w in writes)
    blocker.execute("ROLLBACK")
    blocker.close()
    store.close()  # returns once the queue is empty
    store.close()  # and twice is harmless
    await asyncio.gather(*writes)  # each one's result reaches the loop: none failed
    with pytest.raises(StoreError, match="closed"):
        await store.run(lambda: None)
    with Store.open(db) as again:
        assert [again.get_meta(f"m{i}") for i in range(20)] == [str(i) for i in range(20)]


async def test_a_write_whose_caller_is_cancelled_still_completes(store: Store, db: Path) -> None:
    blocker = raw(db)
    blocker.execute("BEGIN IMMEDIATE")
    first = asyncio.ensure_future(store.run(lambda: store.set_meta("first", "1")))
    queued = asyncio.ensure_future(store.run(lambda: store.set_meta("queued", "2")))
    await asyncio.sleep(0.1)  # `first` is waiting for the lock, `queued` has not started
    first.cancel()
    queued.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    with pytest.raises(asyncio.CancelledError):
        await queued
    blocker.execute("ROLLBACK")
    blocker.close()
    # Whole, in order, on the writer thread: a later write finds both applied.
    assert await store.run(lambda: (store.get_meta("first"), store.get_meta("queued"))) == (
        "1",
        "2",
    )


async def test_a_failure_nobody_waits_for_any_more_is_logged(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    started = threading.Event()
    go_on = threading.Event()

    def fail() -> None:
        started.set()
        go_on.wait(10)
        msg = "disk is full"
        raise StoreError(msg)

    waiting = asyncio.ensure_future(store.run(fail))
    await asyncio.to_thread(started.wait, 10)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    go_on.set()
    await store.run(lambda: None)  # the failed write is over
    await asyncio.sleep(0.05)  # its result reaches the loop
    assert any(
        "after its caller had stopped waiting" in r.getMessage()
        and "disk is full" in r.getMessage()
        for r in caplog.records
    )


async def test_direct_calls_and_the_writer_share_the_connection_safely(store: Store) -> None:
    def writer_side() -> None:
        for i in range(100):
            store.save_state("w", "t/w", {"i": i})

    running = asyncio.ensure_future(store.run(writer_side))
    for i in range(100):  # meanwhile, direct calls on the loop's thread
        store.save_state("d", "t/d", {"i": i})
        store.load_states()
    await running
    assert store.load_states() == {"w": ("t/w", {"i": 99}), "d": ("t/d", {"i": 99})}
