"""`car2mqtt demo` as a newcomer meets it: a real subprocess, its commands run as printed."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urljoin

import httpx
import pytest

from car2mqtt.demo import DemoInfo, instructions
from tests.mqtt_support import Mosquitto, free_port, mosquitto_binary, probe
from tests.support import running_sim, table_row
from tests.test_link_enode import drive_enode_link

CONSOLE_SCRIPT = Path(sys.executable).parent / "car2mqtt"
CAR_NAMES = ("Tesla Model 3", "Volkswagen ID.4", "XPENG G6", "Volkswagen Golf", "Renault Zoe")


@dataclass
class Output:
    """Lines a process writes, collected by a thread so nobody blocks on a pipe."""

    lines: list[str] = field(default_factory=list)
    thread: threading.Thread | None = None

    def text(self) -> str:
        return "".join(self.lines)

    def wait_for(self, pattern: str, timeout: float = 30.0) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if found := re.search(pattern, self.text()):
                return found
            time.sleep(0.05)
        msg = f"no {pattern!r} within {timeout} s in:\n{self.text()[-3000:]}"
        raise AssertionError(msg)


def collect(stream: object) -> Output:
    out = Output()

    def pump() -> None:
        for line in stream:  # type: ignore[attr-defined]
            out.lines.append(line)

    out.thread = threading.Thread(target=pump, daemon=True)
    out.thread.start()
    return out


def finish(proc: subprocess.Popen[str], *outputs: Output) -> None:
    """Stop `proc` if it still runs, read what it wrote to the end, and close its pipes."""
    if proc.poll() is None:
        proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    for out in outputs:
        if out.thread is not None:
            out.thread.join(timeout=10)
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()


@dataclass
class Demo:
    proc: subprocess.Popen[str]
    out: Output
    err: Output
    mqtt_port: int
    env: dict[str, str]


def bare_path(tmp_path: Path, *tools: str) -> str:
    """A PATH with only `tools` on it (symlinks to the real ones): no mosquitto clients."""
    folder = tmp_path / "bin"
    folder.mkdir(exist_ok=True)
    for tool in tools:
        real = subprocess.run(
            ["/bin/sh", "-c", f"command -v {tool}"], capture_output=True, text=True, check=False
        ).stdout.strip()
        assert real, f"{tool} is needed for this test"
        (folder / tool).symlink_to(real)
    return str(folder)


@contextmanager
def running_demo(tmp_path: Path, path_env: str, *extra: str) -> Iterator[Demo]:
    """Start `car2mqtt demo` by its console script, as scripts/demo does, on free ports."""
    mqtt_port = free_port()
    env = {
        "PATH": path_env,
        "HOME": str(tmp_path / "home"),
        "PYTHONUNBUFFERED": "1",
        "COLUMNS": "200",
        "LANG": "C.UTF-8",
    }
    proc = subprocess.Popen(
        [str(CONSOLE_SCRIPT), "demo", "--port", "0", "--mqtt-port", str(mqtt_port), *extra],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    demo = Demo(proc, collect(proc.stdout), collect(proc.stderr), mqtt_port, env)
    try:
        demo.out.wait_for("Ctrl-C stops everything")
        yield demo
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        finish(proc, demo.out, demo.err)


def steps(text: str) -> dict[str, str]:
    """The printed instructions: each `# title` line and the command on the line after it."""
    lines = text.splitlines()
    return {lines[i][2:]: lines[i + 1] for i in range(len(lines) - 1) if lines[i].startswith("# ")}


def step(found: dict[str, str], start: str) -> list[str]:
    [title] = [t for t in found if t.startswith(start)]
    return shlex.split(found[title])


def run(
    argv: list[str], env: dict[str, str], stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: PLW1510
        argv, capture_output=True, text=True, timeout=60, env=env, input=stdin
    )


def status_row(text: str, account: str) -> list[str]:
    for line in text.splitlines():
        cells = [c.strip() for c in line.split("│")]
        if len(cells) > 2 and cells[1] == account:
            return cells[1:-1]
    msg = f"no row for {account} in:\n{text}"
    raise AssertionError(msg)


def drive_xee_consent(url: str, email: str, password: str) -> str:
    """Log in on the simulated Xee consent page with the printed login; return the redirect."""
    with httpx.Client(follow_redirects=False, timeout=10) as browser:
        page = browser.get(url)
        assert page.status_code == 200, page.text
        assert email in page.text, "the consent page shows the test login"
        assert password in page.text
        action = re.search(r"<form method='post' action='([^']+)'", page.text)
        assert action
        hidden = dict(re.findall(r"<input type='hidden' name='(\w+)' value='([^']*)'>", page.text))
        answer = browser.post(
            urljoin(url, action.group(1)),
            data={**hidden, "email": email, "password": password, "decision": "approve"},
        )
        assert answer.status_code == 302, answer.text
        return answer.headers["location"]


def test_every_printed_command_works_without_mosquitto_clients_or_curl(tmp_path: Path) -> None:
    state = tmp_path / "state"
    with running_demo(tmp_path, bare_path(tmp_path), "--state-dir", str(state)) as demo:
        text = demo.out.text()
        found = steps(text)
        env = demo.env
        assert "mosquitto_sub" not in "\n".join(found.values())  # not on this PATH
        assert "curl" not in "\n".join(found.values())
        assert "mosquitto-clients" in text  # how to get them
        assert f"export PATH={CONSOLE_SCRIPT.parent}" in text  # car2mqtt is not on PATH
        config = state / "car2mqtt.yaml"
        assert f"configuration: {config}" in text
        for argv in found.values():
            if "mqtt" not in argv and "sim-admin" not in argv:
                assert argv.startswith(f"{CONSOLE_SCRIPT} "), argv  # by absolute path

        # The configuration holds the simulator's test secrets: private, in a private folder.
        assert stat.S_IMODE(config.stat().st_mode) == 0o600
        assert stat.S_IMODE(state.stat().st_mode) == 0o700

        # status and vehicles against the running demo, by the printed lines.
        status = step(found, "See each account's link")
        deadline = time.monotonic() + 20
        while True:
            result = run(status, env)
            assert result.returncode == 0, result.stderr
            rows = status_row(result.stdout, "demo"), status_row(result.stdout, "demo-xee")
            if [r[4] for r in rows] == ["3", "2"] or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert [r[:3] for r in rows] == [["demo", "enode", "ok"], ["demo-xee", "xee", "ok"]]
        assert [r[4] for r in rows] == ["3", "2"]
        for _ in range(40):  # the bridge subscribes its webhook as it starts
            hooks = run(step(found, "See the Enode cars' webhook"), env)
            assert hooks.returncode == 0, hooks.stderr
            if table_row(hooks.stdout, "demo")["active"] == "yes":
                break
            time.sleep(0.25)
        assert table_row(hooks.stdout, "demo")["active"] == "yes", hooks.stdout
        assert table_row(hooks.stdout, "demo-xee")["webhook"] == "off (polled)"
        # The demo records history as `run` does: the charging Volkswagen's session is there.
        for _ in range(40):
            sessions = run(step(found, "See the charging sessions recorded"), env)
            assert sessions.returncode == 0, sessions.stderr
            if "Volkswagen ID.4" in sessions.stdout:
                break
            time.sleep(0.25)
        assert "Volkswagen ID.4" in sessions.stdout, sessions.stdout
        assert "plugged in" in sessions.stdout  # still open
        cars = run(step(found, "Ask the simulated clouds"), env)
        assert cars.returncode == 0, cars.stderr
        for name in CAR_NAMES:
            assert name in cars.stdout
        assert "unknown" not in cars.stdout  # the petrol car has no charging cell

        # Watch, plug in, wait for the cache, charge: as the instructions say.
        watch = subprocess.Popen(
            step(found, "Watch the cars' state"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        seen = collect(watch.stdout)
        try:
            seen.wait_for(r"car2mqtt/bridge/availability online")
            tesla = step(found, "Plug the Tesla in")
            vehicle = re.search(r"/enode/vehicles/([^/]+)/plug-in", tesla[-2])
            assert vehicle, tesla
            plugged = run(tesla, env)
            assert plugged.returncode == 0, plugged.stderr
            assert '"pluggedIn": true' in plugged.stdout
            state_topic = rf"car2mqtt/enode/{vehicle.group(1)}/state "
            seen.wait_for(state_topic + r'\{[^\n]*"plugged_in":"ON"', timeout=30)
            charge = run(step(found, "Once its state says plugged_in ON"), env)
            assert charge.returncode == 0, charge.stderr
            seen.wait_for(state_topic + r'\{[^\n]*"charging":"ON"', timeout=40)
            current = run(step(found, "Set its maximum charging current"), env)
            assert current.returncode == 0, current.stderr
            command_topic = rf"car2mqtt/enode/{vehicle.group(1)}/command "
            seen.wait_for(command_topic + r'\{"command":"set_max_current","status":"confirmed"')
            seen.wait_for(state_topic + r'\{[^\n]*"max_current":10\.0', timeout=40)
            for title in ("Send the first Xee car", "Jump an hour ahead"):
                result = run(step(found, title), env)
                assert result.returncode == 0, result.stderr
            discovery = run([*step(found, "See what Home Assistant"), "--count", "1"], env)
            assert discovery.returncode == 0, discovery.stderr
            assert discovery.stdout.startswith("homeassistant/")
        finally:
            finish(watch, seen)

        # Linking more cars through the simulated Link UI.
        link = subprocess.Popen(
            step(found, "Link more cars"),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        linked = collect(link.stdout)
        url = linked.wait_for(r"(?m)^(http://\S+/enode/link/\S+)$").group(1)
        assert drive_enode_link(url).status_code == 200
        assert link.wait(timeout=30) == 0
        finish(link, linked)
        assert "Polestar" in linked.text()

        # Authorizing at the simulated Xee with the printed test login.
        login = re.search(r"test login: (\S+) / (\S+)\)", text)
        assert login, "the demo prints the Xee test login"
        consent = subprocess.Popen(
            step(found, "Authorize car2mqtt at the simulated Xee"),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        answered = collect(consent.stdout)
        url = answered.wait_for(r"(?m)^(http://\S+/xee/v4/oauth/authorize\?\S+)$").group(1)
        location = drive_xee_consent(url, login.group(1), login.group(2))
        # If the redirect's port was taken, the command takes the pasted address instead.
        with contextlib.suppress(httpx.TransportError):
            httpx.get(location, timeout=10)
        assert consent.stdin is not None
        with_paste = consent.poll() is None
        if with_paste:
            consent.stdin.write(location + "\n")
            consent.stdin.flush()
        assert consent.wait(timeout=30) == 0
        finish(consent, answered)
        assert "Linked." in answered.text()
    assert demo.proc.returncode == 0
    assert "Traceback" not in demo.err.text()


def test_sigterm_stops_the_demo_cleanly_and_a_subscriber_sees_offline(tmp_path: Path) -> None:
    with running_demo(tmp_path, bare_path(tmp_path), "--state-dir", str(tmp_path / "s")) as demo:
        seen_payloads: list[bytes] = []

        async def watch() -> None:
            async with probe(demo.mqtt_port, "car2mqtt/bridge/availability") as seen:
                await seen.wait_for(lambda p: p.last("car2mqtt/bridge/availability") == b"online")
                demo.proc.send_signal(signal.SIGTERM)
                deadline = time.monotonic() + 20
                while time.monotonic() < deadline and demo.proc.poll() is None:
                    seen_payloads[:] = [payload for _, payload, _ in seen.messages]
                    if seen_payloads[-1:] == [b"offline"]:
                        break
                    await asyncio.sleep(0.02)
                # What came in as the process ended counts too.
                await asyncio.sleep(0.1)
                seen_payloads[:] = [payload for _, payload, _ in seen.messages]

        try:
            asyncio.run(watch())
        except Exception as exc:
            # The probe's connection ends with the embedded broker; what it saw still counts.
            if "Disconnected" not in str(exc) and "closed" not in str(exc).lower():
                raise
        assert seen_payloads[-1:] == [b"offline"], demo.err.text()
        assert demo.proc.wait(timeout=20) == 0
    err = demo.err.text()
    assert "Traceback" not in err
    assert "CancelledError" not in err


def test_a_second_demo_on_the_same_state_folder_is_refused(tmp_path: Path) -> None:
    state = str(tmp_path / "state")
    with running_demo(tmp_path, bare_path(tmp_path), "--state-dir", state) as demo:
        other = run(
            [
                str(CONSOLE_SCRIPT),
                "demo",
                "--port",
                "0",
                "--mqtt-port",
                str(free_port()),
                *("--state-dir", state),
            ],
            demo.env,
        )
    assert other.returncode == 2
    assert "another car2mqtt demo is running with" in other.stderr
    assert "Traceback" not in other.stderr


def test_each_start_begins_with_a_fresh_state_file(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    (state / "car2mqtt.db").write_bytes(b"left over from an older simulator")
    with running_demo(tmp_path, bare_path(tmp_path), "--state-dir", str(state)) as demo:
        found = steps(demo.out.text())
        result = run(step(found, "See each account's link"), demo.env)
        assert result.returncode == 0, result.stderr


# --- the instructions, for the machines this one is not --------------------------------------


def info(**changes: object) -> DemoInfo:
    values: dict[str, object] = {
        "simulator_url": "http://127.0.0.1:8700",
        "admin_url": "http://127.0.0.1:8700/admin",
        "broker_host": "127.0.0.1",
        "broker_port": 1883,
        "embedded_broker": True,
        "vehicle_ids": ["v-tesla"],
        "xee_vehicle_ids": ["x-golf"],
        "time_factor": 60.0,
        "state_dir": Path("/state"),
        "config_path": Path("/state/car2mqtt.yaml"),
        "xee_username": "demo@xee.example",
        "xee_password": "demo-password",
        **changes,
    }
    return DemoInfo(**values)  # type: ignore[arg-type]


def which_of(*present: str) -> Callable[[str], str | None]:
    return lambda name: f"/usr/bin/{name}" if name in present else None


def test_instructions_use_mosquitto_and_curl_where_installed() -> None:
    present = which_of("mosquitto_sub", "mosquitto_pub", "curl", "car2mqtt")
    told = instructions(info(), car2mqtt=["/usr/bin/car2mqtt"], which=present)
    commands = [cmd for _, cmd in told.steps]
    assert "mosquitto_sub -h 127.0.0.1 -p 1883 -t 'car2mqtt/#' -v" in commands
    assert (
        "mosquitto_pub -h 127.0.0.1 -p 1883 -t car2mqtt/enode/v-tesla/charging/set -m ON"
        in commands
    )
    assert any(cmd.startswith("curl -s -X POST") for cmd in commands)
    assert told.notes == []  # nothing missing, car2mqtt on PATH


def test_instructions_never_put_a_broker_password_on_the_command_line() -> None:
    told = instructions(
        info(broker_plain=False),
        car2mqtt=["/opt/car2mqtt"],
        which=which_of("mosquitto_sub", "mosquitto_pub", "curl"),
    )
    commands = [cmd for _, cmd in told.steps]
    assert not any("mosquitto" in cmd for cmd in commands)
    assert "/opt/car2mqtt mqtt watch --config /state/car2mqtt.yaml 'car2mqtt/#'" in commands


@pytest.mark.parametrize(
    ("tools", "hint"),
    [
        (("apt-get",), "apt-get install mosquitto-clients"),
        (("brew",), "brew install mosquitto"),
        ((), "mosquitto-clients"),
    ],
)
def test_the_install_line_fits_the_machine(tools: tuple[str, ...], hint: str) -> None:
    if sys.platform == "darwin" and not tools:
        hint = "brew install mosquitto"
    told = instructions(info(), car2mqtt=["/x/car2mqtt"], which=which_of(*tools))
    assert any(hint in note for note in told.notes)
    sudo = os.geteuid() != 0
    if tools == ("apt-get",):
        assert any(("sudo apt-get" in note) == sudo for note in told.notes if "apt-get" in note)


def test_the_simulated_xee_consent_page_shows_the_test_login() -> None:
    with running_sim() as sim:
        xee = sim.info["xee"]
        page = httpx.get(
            xee["authorizeUrl"],
            params={
                "client_id": xee["clientId"],
                "response_type": "code",
                "redirect_uri": "http://127.0.0.1:8765/callback",
                "state": "s" * 32,
            },
            timeout=10,
        )
    assert page.status_code == 200
    assert f"<code>{xee['username']}</code>, password <code>{xee['password']}</code>" in page.text


def test_scripts_demo_installs_mosquitto_clients_only_when_it_needs_no_password(
    tmp_path: Path,
) -> None:
    # Stand-ins for dpkg, apt-get and sudo record what the script asks of them.
    calls = tmp_path / "calls"
    bin_dir = tmp_path / "stubs"
    bin_dir.mkdir()
    for name, code in (("dpkg", 1), ("apt-get", 0), ("sudo", 0)):
        stub = bin_dir / name
        stub.write_text(f'#!/bin/sh\necho "{name} $*" >> {calls}\nexit {code}\n')
        stub.chmod(0o755)
    env_sh = Path(__file__).parent.parent / "scripts" / "_env.sh"

    def offer(uid: int, sudo_works: bool) -> list[str]:
        calls.unlink(missing_ok=True)
        (bin_dir / "sudo").write_text(
            f'#!/bin/sh\necho "sudo $*" >> {calls}\n'
            + ('[ "$1" = -n ] && shift; "$@"\n' if sudo_works else "exit 1\n")
        )
        (bin_dir / "id").write_text(f"#!/bin/sh\necho {uid}\n")
        (bin_dir / "id").chmod(0o755)
        result = subprocess.run(
            ["/bin/bash", "-c", f"source {env_sh}; offer_apt mosquitto-clients; echo done"],
            capture_output=True,
            text=True,
            env={"PATH": f"{bin_dir}:/usr/bin:/bin"},
            check=False,
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == "done"  # never fails the demo
        return calls.read_text().splitlines() if calls.exists() else []

    as_root = offer(0, sudo_works=False)
    assert "apt-get install -y -qq mosquitto-clients" in as_root
    with_sudo = offer(1000, sudo_works=True)
    assert (
        "sudo -n env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto-clients"
        in with_sudo
    )
    without = offer(1000, sudo_works=False)
    assert not any(line.startswith("apt-get") for line in without)  # no password prompt


def test_a_broker_password_stays_in_the_private_file(tmp_path: Path) -> None:
    passwd_tool = shutil.which("mosquitto_passwd") or str(
        Path(mosquitto_binary()).parent.parent / "bin" / "mosquitto_passwd"
    )
    subprocess.run(
        [passwd_tool, "-b", "-c", str(tmp_path / "passwd"), "bridge", "s3cret-pass"], check=True
    )
    (tmp_path / "passwd").chmod(0o600)
    broker = Mosquitto(
        tmp_path, extra_config=f"allow_anonymous false\npassword_file {tmp_path / 'passwd'}\n"
    )
    broker.start()
    try:
        state = tmp_path / "state"
        url = f"mqtt://bridge:s3cret-pass@127.0.0.1:{broker.port}"
        with running_demo(
            tmp_path, bare_path(tmp_path), "--broker", url, "--state-dir", str(state)
        ) as demo:
            found = steps(demo.out.text())
            watch = step(found, "Watch the cars' state")
            assert watch[1:4] == ["mqtt", "watch", "--config"]  # never a password in argv
            seen = run([*watch, "--count", "1"], demo.env)
            assert seen.returncode == 0, seen.stderr
            assert seen.stdout.startswith("car2mqtt/")
            config = (state / "car2mqtt.yaml").read_text()
            assert "password: s3cret-pass" in config
            assert stat.S_IMODE((state / "car2mqtt.yaml").stat().st_mode) == 0o600
        assert "s3cret-pass" not in demo.out.text() + demo.err.text()
    finally:
        broker.stop()
