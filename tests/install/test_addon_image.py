"""The add-on's image beside a fake Supervisor and a real mosquitto with a password."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.install.images import PYTHON_BASE, container, podman
from tests.install.supervisor import TOKEN, FakeSupervisor, running_supervisor
from tests.mqtt_support import Mosquitto, probe, running_mosquitto
from tests.support import Sim
from tests.web.conftest import enode_account, links_of

pytestmark = pytest.mark.e2e

AVAILABILITY = "car2mqtt/bridge/availability"
USER, PASSWORD = "addons", "mosquitto-addon-password"
# Home Assistant's own network: the Supervisor's ingress proxy is 172.30.32.2 on it.
NETWORK, SUBNET, GATEWAY, PROXY = (
    "car2mqtt-test-hassio",
    "172.30.32.0/23",
    "172.30.32.1",
    "172.30.32.2",
)
INGRESS = 8099
PREFIX = "/api/hassio_ingress/tok3n"


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    """A mosquitto that wants a login, as the Mosquitto add-on does."""
    passwd = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-c", "-b", str(passwd), USER, PASSWORD], check=True)
    with running_mosquitto(
        tmp_path, extra_config=f"allow_anonymous false\npassword_file {passwd}\n"
    ) as mosquitto:
        yield mosquitto


@pytest.fixture
def supervisor(broker: Mosquitto) -> Iterator[FakeSupervisor]:
    """The Supervisor at http://supervisor (port 80 of this machine), offering that broker."""
    with running_supervisor("127.0.0.1", 80) as fake:
        fake.offer(host="127.0.0.1", port=broker.port, ssl=False, username=USER, password=PASSWORD)
        yield fake


@pytest.fixture(scope="module")
def hassio_network() -> Iterator[str]:
    """A podman network shaped like Home Assistant's, for a stand-in ingress proxy."""
    podman("network", "rm", "-f", NETWORK, check=False)
    podman("network", "create", "--subnet", SUBNET, "--gateway", GATEWAY, NETWORK)
    yield NETWORK
    podman("network", "rm", "-f", NETWORK, check=False)


def addon_folders(tmp_path: Path, sim: Sim) -> list[str]:
    """/data with the options.json the Supervisor writes, and /config (addon_config)."""
    data, config = tmp_path / "data", tmp_path / "config"
    data.mkdir()
    config.mkdir()
    (data / "options.json").write_text(json.dumps({"accounts": [], "log_level": "info"}))
    # The simulator's account goes in the user's extra file: its URLs are no add-on option
    # (the Configuration tab offers Enode's production and sandbox).
    (config / "car2mqtt.yaml").write_text(json.dumps({"accounts": [enode_account(sim)]}))
    return ["-v", f"{data}:/data", "-v", f"{config}:/config"]


def addon_options(folders: list[str]) -> list[str]:
    """How the Supervisor starts the add-on, with `supervisor` resolving to this machine."""
    return [
        "--network",
        "host",
        "--add-host",
        "supervisor:127.0.0.1",
        "-e",
        f"SUPERVISOR_TOKEN={TOKEN}",
        *folders,
    ]


async def until_cars(port: int, count: int) -> None:
    """Wait for `count` cars' states, logged in as the Supervisor's broker user."""
    async with probe(port, "car2mqtt/#", USER, PASSWORD) as seen:
        await seen.wait_for(
            lambda p: (
                len({t for t in p.topics() if t.endswith("/state") and "/bridge/" not in t})
                >= count
            ),
            what=f"{count} cars",
            timeout=60,
        )


def through_ingress(network: str, path: str) -> tuple[int, str]:
    """GET `path` of the add-on from the ingress proxy's address, as the Supervisor forwards it."""
    script = (
        "import json, urllib.request, urllib.error\n"
        f"r = urllib.request.Request('http://{GATEWAY}:{INGRESS}{path}', "
        f"headers={{'X-Ingress-Path': '{PREFIX}'}})\n"
        "try:\n"
        "    a = urllib.request.urlopen(r, timeout=10)\n"
        "    print(json.dumps([a.status, a.read().decode()]))\n"
        "except urllib.error.HTTPError as e:\n"
        "    print(json.dumps([e.code, e.read().decode()]))\n"
    )
    result = podman(
        "run", "--rm", "--network", network, "--ip", PROXY, PYTHON_BASE, "python3", "-c", script
    )
    status, body = json.loads(result.stdout)
    return int(status), str(body)


def test_the_add_on_publishes_with_the_supervisors_broker_and_serves_only_ingress(
    addon_image: str,
    sim: Sim,
    broker: Mosquitto,
    supervisor: FakeSupervisor,
    hassio_network: str,
    tmp_path: Path,
) -> None:
    folders = addon_folders(tmp_path, sim)
    with container(addon_options(folders), addon_image) as addon:
        try:
            asyncio.run(until_cars(broker.port, 3))
        except AssertionError:
            pytest.fail(addon.logs())
        assert ("/services/mqtt", f"Bearer {TOKEN}") in supervisor.asked
        written = tmp_path / "data" / "car2mqtt.yaml"
        assert written.stat().st_mode & 0o777 == 0o600
        assert PASSWORD not in addon.logs()

        status, page = through_ingress(hassio_network, "/")
        assert status == 200, page
        links = [u for u in links_of(page) if u.startswith("/")]
        assert links
        assert all(u.startswith(PREFIX + "/") or u == PREFIX for u in links), links
        cars = {u for u in links if u.startswith(f"{PREFIX}/cars/")}
        assert len(cars) == 3, links  # the simulator's cars, on the panel
        # Any other source, this machine included, is refused.
        refused = httpx.get(f"http://127.0.0.1:{INGRESS}/", headers={"X-Ingress-Path": PREFIX})
        assert refused.status_code == 403

        async def stop() -> bytes | None:
            async with probe(broker.port, AVAILABILITY, USER, PASSWORD) as seen:
                await seen.wait_for(lambda p: p.last(AVAILABILITY) == b"online", what="online")
                await asyncio.to_thread(podman, "stop", "-t", "10", addon.name)
                await seen.wait_for(lambda p: p.last(AVAILABILITY) == b"offline", what="offline")
                return seen.last(AVAILABILITY)

        assert asyncio.run(stop()) == b"offline"
        assert addon.inspect("{{.State.ExitCode}}") == "0", addon.logs()
        assert "Traceback" not in addon.logs()


def test_without_a_broker_the_add_on_stops_with_one_line_in_its_log(
    addon_image: str, sim: Sim, supervisor: FakeSupervisor, tmp_path: Path
) -> None:
    supervisor.refuse(400, "Service not enabled")
    with container(addon_options(addon_folders(tmp_path, sim)), addon_image) as addon:
        deadline = time.monotonic() + 30
        while addon.inspect("{{.State.Status}}") != "exited" and time.monotonic() < deadline:
            time.sleep(0.1)
        assert addon.inspect("{{.State.ExitCode}}") == "1"
        lines = addon.logs().strip().splitlines()
        assert lines == [
            "car2mqtt add-on: no MQTT broker: install and start the Mosquitto broker add-on "
            "(Settings > Add-ons), then restart this add-on (the Supervisor said: Service not "
            "enabled)"
        ]
