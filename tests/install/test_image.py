"""The container image, built and run with podman: demo, run, state, health and stop."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterator
from pathlib import Path

import aiomqtt
import pytest
import yaml

from tests.install.images import Container, container, podman
from tests.mqtt_support import Mosquitto, free_port, probe, running_mosquitto
from tests.support import Sim
from tests.test_demo import status_row
from tests.web.conftest import enode_account

pytestmark = pytest.mark.e2e

AVAILABILITY = "car2mqtt/bridge/availability"
UID = 1000  # the image's car2mqtt user


def states(seen_topics: set[str]) -> set[str]:
    """The cars' state topics among `seen_topics`."""
    return {t for t in seen_topics if t.endswith("/state") and "/bridge/" not in t}


async def until_cars(port: int, count: int) -> None:
    """Wait until `count` cars' states are on the broker at `port` (which may still start)."""
    for _ in range(300):
        try:
            async with probe(port, "car2mqtt/#") as seen:
                await seen.wait_for(
                    lambda p: len(states(p.topics())) >= count, what=f"{count} cars", timeout=60
                )
                return
        except aiomqtt.MqttError:
            await asyncio.sleep(0.2)  # the container's broker is not listening yet
    msg = f"no broker on port {port}"
    raise AssertionError(msg)


def test_demo_inside_the_image_serves_cars_to_a_subscriber_on_the_host(image: str) -> None:
    port = free_port()
    options = ["-p", f"127.0.0.1:{port}:1883"]
    everywhere = "0.0.0.0"  # noqa: S104 - inside the container, for the published port
    with container(options, image, "demo", "--mqtt-host", everywhere, "--port", "0") as demo:
        try:
            asyncio.run(until_cars(port, 3))
        except AssertionError:
            pytest.fail(demo.logs())
        assert demo.inspect("{{.Config.User}}") == "car2mqtt"


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    """A mosquitto on the host's loopback."""
    with running_mosquitto(tmp_path) as mosquitto:
        yield mosquitto


def test_run_with_a_mounted_configuration_publishes_keeps_state_and_stops_cleanly(
    image: str, sim: Sim, broker: Mosquitto, tmp_path: Path
) -> None:
    data, web_port = tmp_path / "data", free_port()
    data.mkdir(mode=0o700)
    os.chown(data, UID, UID)
    config = tmp_path / "car2mqtt.yaml"
    config.write_text(
        json.dumps(
            {
                "mqtt": {"url": broker.url},
                "web": {"host": "127.0.0.1", "port": web_port},
                "accounts": [enode_account(sim)],
            }
        )
    )
    config.chmod(0o644)
    mounts = ["-v", f"{config}:/config/car2mqtt.yaml:ro", "-v", f"{data}:/data"]
    # The host's network: the container reaches the mosquitto and the simulator on loopback.
    with container(["--network", "host", *mounts], image) as bridge:
        try:
            asyncio.run(until_cars(broker.port, 3))
        except AssertionError:
            pytest.fail(bridge.logs())
        health = podman("healthcheck", "run", bridge.name, check=False)
        assert health.returncode == 0, bridge.logs() + health.stdout + health.stderr
        assert "healthy" in bridge.exec("car2mqtt", "health").stdout

        stopped = asyncio.run(stop_and_watch(bridge, broker.port))
        assert stopped == b"offline"
        # Exit code 0: it ended on SIGTERM by itself; podman would have killed it after the
        # 5 s given (exit 137).
        assert bridge.inspect("{{.State.ExitCode}}") == "0", bridge.logs()
        assert "Traceback" not in bridge.logs()

        db = data / "car2mqtt.db"
        assert db.stat().st_uid == UID
        assert db.stat().st_mode & 0o777 == 0o600
        # The state outlives the container: a new one on the same /data reads it.
        status = subprocess_status(image, mounts)
        account, _, link, *_ = status_row(status, "home")
        assert (account, link) == ("home", "ok"), status

        podman("start", bridge.name)
        asyncio.run(until_online(broker.port))
        assert db.stat().st_uid == UID


async def stop_and_watch(bridge: Container, port: int) -> bytes | None:
    """`podman stop -t 5` the bridge; return its availability as it ended."""
    async with probe(port, AVAILABILITY) as seen:
        await seen.wait_for(lambda p: p.last(AVAILABILITY) == b"online", what="online")
        await asyncio.to_thread(podman, "stop", "-t", "5", bridge.name)
        await seen.wait_for(lambda p: p.last(AVAILABILITY) == b"offline", what="offline")
        return seen.last(AVAILABILITY)


async def until_online(port: int) -> None:
    """Wait until the bridge says online again."""
    async with probe(port, AVAILABILITY) as seen:
        await seen.wait_for(
            lambda p: p.last(AVAILABILITY) == b"online", what="online again", timeout=30
        )


def subprocess_status(image: str, mounts: list[str]) -> str:
    """`car2mqtt status` in a throwaway container on the same volume."""
    result = podman("run", "--rm", "--network", "none", *mounts, image, "status", check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_the_compose_example_is_consistent_and_its_configuration_valid_in_the_image(
    image: str, tmp_path: Path
) -> None:
    root = Path(__file__).resolve().parents[2]
    compose = yaml.safe_load((root / "docker-compose.yml").read_text())
    service = compose["services"]["car2mqtt"]
    assert (root / service["build"]["context"] / service["build"]["dockerfile"]).is_file()
    binds = [v.split(":") for v in service["volumes"] if v.startswith("./")]
    binds += [v.split(":") for v in compose["services"]["mosquitto"]["volumes"] if "./" in v]
    for source, *_ in binds:
        assert (root / source).is_file(), source
    config_mount = next(f"{root / s}:{t}:ro" for s, t, *_ in binds if t.endswith("car2mqtt.yaml"))
    # Compose mounts each secret as /run/secrets/<name>; the example reads them from there.
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    for name, spec in compose["secrets"].items():
        assert service["secrets"].count(name) == 1
        assert (root / spec["file"]).parent.is_dir()
        (secrets / name).write_text(f"{name}-value")
        (secrets / name).chmod(0o644)
    checked = podman(
        "run",
        "--rm",
        "--network",
        "none",
        "-v",
        config_mount,
        "-v",
        f"{secrets}:/run/secrets:ro",
        image,
        "config",
        "check",
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "is valid" in checked.stdout
    assert "enode_client_secret-value" not in checked.stdout + checked.stderr
