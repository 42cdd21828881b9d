"""TLS and username/password against a real mosquitto."""

from __future__ import annotations

import asyncio
import logging
import shutil
import subprocess
from pathlib import Path

import pytest
import trustme

from car2mqtt.mqtt.link import BrokerSettings
from car2mqtt.runtime import running
from car2mqtt.store import Store
from tests.bridge.conftest import FAST, TOPICS, enode_provider
from tests.mqtt_support import Mosquitto, mosquitto_binary
from tests.support import Sim

pytestmark = pytest.mark.asyncio


def secured_broker(tmp_path: Path) -> tuple[Mosquitto, Path]:
    """Start mosquitto with TLS and a password file; return it and the CA to trust."""
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    server.private_key_pem.write_to_path(str(tmp_path / "server.key"))
    server.cert_chain_pems[0].write_to_path(str(tmp_path / "server.pem"))
    passwd_tool = shutil.which("mosquitto_passwd") or str(
        Path(mosquitto_binary()).parent.parent / "bin" / "mosquitto_passwd"
    )
    subprocess.run(
        [passwd_tool, "-b", "-c", str(tmp_path / "passwd"), "bridge", "s3cret-pass"], check=True
    )
    (tmp_path / "passwd").chmod(0o600)
    broker = Mosquitto(
        tmp_path,
        extra_config=(
            f"cafile {ca_file}\ncertfile {tmp_path / 'server.pem'}\n"
            f"keyfile {tmp_path / 'server.key'}\nallow_anonymous false\n"
            f"password_file {tmp_path / 'passwd'}\n"
        ),
    )
    broker.start()
    return broker, ca_file


async def test_tls_with_username_and_password(
    sim: Sim, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    broker, ca_file = secured_broker(tmp_path)
    caplog.set_level(logging.INFO)
    try:
        store = Store.open(tmp_path / "s.db")
        settings = BrokerSettings.from_url(
            f"mqtts://127.0.0.1:{broker.port}",
            username="bridge",
            password="s3cret-pass",
            ca_file=str(ca_file),
        )
        assert settings.tls
        async with running(
            [enode_provider(sim, store)], store=store, broker=settings, topics=TOPICS, timing=FAST
        ) as run:
            await asyncio.wait_for(run.link.connected.wait(), 10)
            await asyncio.sleep(0.5)
            assert run.link.published > 3
        # Wrong password: refused, retried quietly, never a crash.
        wrong = BrokerSettings.from_url(
            f"mqtts://127.0.0.1:{broker.port}",
            username="bridge",
            password="nope-nope",
            ca_file=str(ca_file),
        )
        async with running(
            [enode_provider(sim, store)], store=store, broker=wrong, topics=TOPICS, timing=FAST
        ) as run:
            await asyncio.sleep(2)
            assert not run.link.connected.is_set()
            assert not run.task.done()
        store.close()
    finally:
        broker.stop()
    refused = [r for r in caplog.records if "unavailable" in r.getMessage()]
    assert len(refused) == 1
    assert "s3cret-pass" not in caplog.text
    assert "nope-nope" not in caplog.text
