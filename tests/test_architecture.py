"""The shape the code keeps: no import cycles, and providers named only in their own folders."""

from __future__ import annotations

import ast
from pathlib import Path

import car2mqtt
import car2mqtt.providers.registry
from car2mqtt.providers.registry import PLUGINS

SRC = Path(car2mqtt.__file__).parent
# The simulator plays the clouds and the demo shows them: both may name them (issue 10).
EXEMPT = ("simulator", "demo.py")


def module_name(path: Path) -> str:
    """Return the dotted module name of a file under src/car2mqtt."""
    parts = ["car2mqtt", *path.relative_to(SRC).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    """Every module of the bridge (the simulator aside)."""
    return {
        module_name(path): path
        for path in sorted(SRC.rglob("*.py"))
        if path.relative_to(SRC).parts[0] != "simulator"
    }


def imports(path: Path, known: set[str]) -> set[str]:
    """Return the car2mqtt modules `path` imports anywhere, in functions and type checks too."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from car2mqtt.a import b` imports car2mqtt.a.b when b is a module, else car2mqtt.a.
            names = [
                f"{node.module}.{alias.name}"
                if f"{node.module}.{alias.name}" in known
                else node.module
                for alias in node.names
            ]
        found.update(name for name in names if name in known)
    return found


def test_the_modules_import_each_other_without_a_cycle() -> None:
    found = modules()
    known = set(found)
    graph = {name: imports(path, known) - {name} for name, path in found.items()}
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(name: str, path: list[str]) -> None:
        state[name] = 1
        for target in sorted(graph[name]):
            if state.get(target) == 1:
                cycles.append([*path[path.index(target) :], target])
            elif target not in state:
                visit(target, [*path, target])
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert cycles == []


def test_no_module_outside_a_provider_folder_names_a_provider() -> None:
    registry = Path(car2mqtt.providers.registry.__file__)
    assert {"enode", "xee"} <= set(PLUGINS)
    offenders: list[str] = []
    for path in sorted(SRC.rglob("*.py")):
        relative = path.relative_to(SRC)
        if relative.parts[0] in EXEMPT or path == registry:
            continue
        if relative.parts[:1] == ("providers",) and len(relative.parts) > 2:
            owner = relative.parts[1]
            names = [name for name in PLUGINS if name != owner]
        else:
            names = list(PLUGINS)
        text = path.read_text().lower()
        offenders += [f"{relative} names {name}" for name in names if name in text]
    assert offenders == []


def test_the_hub_and_the_sources_know_no_sink() -> None:
    found = modules()
    known = set(found)
    sinks = {"car2mqtt.bridge.publisher", "car2mqtt.bridge.intake"}
    for name in ("car2mqtt.bridge.hub", "car2mqtt.bridge.poller", "car2mqtt.bridge.commands"):
        assert imports(found[name], known) & sinks == set(), name
    # Only the composition root knows every part.
    importers = {n for n, p in found.items() if "car2mqtt.bridge.root" in imports(p, known)}
    assert importers <= {"car2mqtt.runtime"}
