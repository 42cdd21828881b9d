"""Killing the bridge around Xee token refreshes never costs the user their link.

A token lives 123 s and the bridge renews 120 s before expiry, so every run starts with a
refresh and refreshes again every 3 s; the token endpoint is made slow some of the time so
kills also land while a rotation is in flight, including after the cloud rotated the refresh
token but before the answer arrived. Only the cloud can make that window safe: the simulator,
like Auth0 or Okta, lets the used refresh token be replayed for a short grace until the new pair
is used, and hands back the same pair. What the bridge must do is keep its last saved pair intact
and never use a pair it has not saved. The bridge runs as users run it (`car2mqtt run`,
a subprocess) and dies by SIGKILL: no cleanup, no last chance to save anything.
"""

from __future__ import annotations

import json
import random
import signal
import time
from pathlib import Path

import pytest

from car2mqtt.store import Store
from tests.bridge.conftest import write_xee_config, xee_password_tokens
from tests.bridge.test_cli import wait_retained
from tests.mqtt_support import Mosquitto
from tests.support import running_sim, started_cli

KILLS = 12
TOKEN_TTL_S = 123.0


def test_sigkill_at_many_points_around_refreshes_keeps_the_link(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    with running_sim(time_factor=1.0, xee_token_ttl_s=TOKEN_TTL_S) as sim:
        xee = sim.info["xee"]
        grant = xee_password_tokens(sim)
        state_file = tmp_path / "car2mqtt.db"
        with Store.open(state_file) as store:  # as `car2mqtt link xee` leaves it
            store.save_token(
                "car",
                {
                    "access_token": grant["access_token"],
                    "refresh_token": grant["refresh_token"],
                    "expires_at": time.time() + TOKEN_TTL_S,
                    "scope": grant.get("scope"),
                },
            )
        config = write_xee_config(
            tmp_path,
            sim,
            mqtt={"url": mosquitto.url},
            log={"level": "debug"},
            poll_interval_s=60,
        )
        # Token requests are often slow, before the cloud acts or after it rotated the refresh
        # token but before the answer leaves: kills land in both windows.
        slow = {"classes": {"auth": {"slow": 0.3, "late": 0.6, "slowSeconds": 0.5}}}
        assert sim.admin_call("PUT", "/xee/faults", slow).status_code == 200
        rng = random.Random(20261122)
        logs = []
        rotations = set()
        for _ in range(KILLS):
            with started_cli("run", "--config", str(config)) as proc:
                time.sleep(rng.uniform(0.3, 4.0))
                proc.send_signal(signal.SIGKILL)
                proc.wait(timeout=10)
                assert proc.stderr is not None
                logs.append(proc.stderr.read())
            with Store.open(state_file) as store:
                saved = store.load_token("car")
            assert saved is not None, "a kill never leaves the store without a token"
            rotations.add(saved["refresh_token"])

        # After all that, a normal run still reads the cars and says the link is fine.
        electric = next(
            v
            for v in next(iter(xee["users"].values()))
            if sim.admin_call("GET", f"/xee/vehicles/{v}").json()["kind"] == "electric"
        )
        assert sim.admin_call("PUT", f"/xee/vehicles/{electric}/battery", {"level": 33}).is_success
        with started_cli("run", "--config", str(config), stop=signal.SIGTERM) as proc:
            kept = wait_retained(
                mosquitto, lambda r: any(b'"battery":33' in v for t, v in r.items() if "xee" in t)
            )
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=15)
            assert proc.stderr is not None
            logs.append(proc.stderr.read())
        bridge = json.loads(kept["car2mqtt/bridge/state"])
        with Store.open(state_file) as store:
            statuses = store.account_statuses()
            vehicles = store.known_vehicles("car")

    everything = "\n".join(logs)
    assert "needs re-linking" not in everything, everything[-3000:]
    assert "Traceback" not in everything
    assert grant["refresh_token"] not in everything
    assert statuses.get("car", ("ok", None))[0] == "ok"
    assert bridge["accounts"]["car"]["link"] == "ok"
    assert len(vehicles) == 2
    assert len(rotations) >= KILLS // 4, "the runs really did rotate the refresh token"


@pytest.mark.parametrize(("grace_s", "link"), [(60.0, "ok"), (0.0, "relink_required")])
def test_killed_after_the_cloud_rotated_but_before_the_answer_arrived(
    mosquitto: Mosquitto, tmp_path: Path, grace_s: float, link: str
) -> None:
    # The one window no client can close. With a replay grace (Auth0, Okta, the simulator's
    # default) the restarted bridge gets the same new pair again; with strictly single-use
    # refresh tokens the link is lost, and the bridge says so instead of crashing.
    with running_sim(xee_token_ttl_s=TOKEN_TTL_S, xee_refresh_grace_s=grace_s) as sim:
        grant = xee_password_tokens(sim)
        state_file = tmp_path / "car2mqtt.db"
        with Store.open(state_file) as store:
            store.save_token(
                "car",
                {
                    "access_token": grant["access_token"],
                    "refresh_token": grant["refresh_token"],
                    "expires_at": time.time() + 60,  # inside the leeway: refresh at once
                },
            )
        config = write_xee_config(tmp_path, sim, mqtt={"url": mosquitto.url})
        late = {"classes": {"auth": {"late": 1.0, "slowSeconds": 10}}}
        assert sim.admin_call("PUT", "/xee/faults", late).status_code == 200
        before = sim.admin_call("GET", "/").json()["apiCalls"]["xee"]
        with started_cli("run", "--config", str(config)) as proc:
            deadline = time.monotonic() + 20
            while sim.admin_call("GET", "/").json()["apiCalls"]["xee"] == before:
                assert time.monotonic() < deadline, "the bridge never asked for a refresh"
                time.sleep(0.02)
            proc.send_signal(signal.SIGKILL)  # the cloud rotated; the answer is still held
            proc.wait(timeout=10)
        with Store.open(state_file) as store:
            saved = store.load_token("car")
        assert saved is not None
        assert saved["refresh_token"] == grant["refresh_token"]  # it never heard the answer
        assert sim.admin_call("PUT", "/xee/faults", {"profile": "none"}).status_code == 200
        with started_cli("run", "--config", str(config), stop=signal.SIGTERM) as proc:
            kept = wait_retained(mosquitto, lambda r: _says(r, link))
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=15) == 0
            assert proc.stderr is not None
            log = proc.stderr.read()
    assert "Traceback" not in log
    bridge = json.loads(kept["car2mqtt/bridge/state"])
    assert bridge["accounts"]["car"]["link"] == link
    if link != "ok":
        assert "car2mqtt link xee --account car" in log


def _says(kept: dict[str, bytes], link: str) -> bool:
    """Whether the retained bridge state is this run's verdict (not the killed run's)."""
    state = json.loads(kept.get("car2mqtt/bridge/state", b"{}"))
    account = state.get("accounts", {}).get("car", {})
    # The killed run never finished a poll: only this run can have cars or a re-link verdict.
    return account.get("link") == link and (link != "ok" or account.get("vehicles") == 2)
