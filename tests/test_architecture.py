"""The dependency rules of docs/architecture.md, checked on the source (imports, via ast)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("rig", "recordings", "inference", "gui", "calibration", "world", "cli")
TOP_MODULES = ("main.py", "errors.py", "station.py", "inspection.py")
SCRIPT_DIRS = ("bench", "scripts", "docs")
HARDWARE_LIBS = ("pypylon", "harvesters", "serial", "PySide6", "pyqtgraph", "shiboken6")
PROJECT = {*PACKAGES, *(m.removesuffix(".py") for m in TOP_MODULES)}

# room -> what it may import from the project (anything else of PROJECT is forbidden)
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "recordings": {"errors"},
    "world": {"errors", "recordings", "rig.geometry", "rig.config", "rig.layout"},
    "rig": {"errors", "recordings", "world"},  # world: only the simulated devices (below)
    "inference": {"errors", "recordings", "world"},  # world: simulated training data
    "calibration": {"errors", "recordings", "rig", "world"},
    "inspection": {"errors", "recordings", "rig", "inference.interfaces"},
    "station": {"errors", "recordings", "rig", "calibration", "inference"},
    "gui": {"errors", "recordings", "rig", "inference", "calibration", "inspection", "station"},
    "cli": {"errors", "recordings", "rig", "world", "inference", "calibration", "inspection",
            "station", "gui"},
    "main": {"errors"},  # command modules are found through COMMAND_MODULES, not imported
}
# The only rig modules that may render the simulated world: the simulated devices.
RIG_WORLD_USERS = ("rig/sim/", "rig/cameras/sim.py")
# Modules that wrap a hardware / GUI library and may import it at module level.
HARDWARE_WRAPPERS = ("rig/grbl.py", "rig/ringlight.py", "rig/cameras/", "cli/devices.py",
                     "rig/serial_link.py", "gui/")


def _imports(path: Path) -> list[tuple[str, bool]]:
    """(module, at_module_level) for every absolute import in a file."""
    tree = ast.parse(path.read_text(), str(path))
    top = {id(n) for n in tree.body}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, id(node) in top) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.module, id(node) in top))
    return out


def _room_files(room: str) -> list[Path]:
    path = ROOT / f"{room}.py"
    return [path] if path.is_file() else sorted((ROOT / room).rglob("*.py"))


def _allowed(module: str, allowed: set[str]) -> bool:
    return any(module == a or module.startswith(a + ".") for a in allowed)


@pytest.mark.parametrize("room", sorted(ALLOWED))
def test_each_room_imports_only_what_it_may(room: str) -> None:
    files = _room_files(room)
    assert files, f"ALLOWED names a room that does not exist: {room}"
    bad = []
    for f in files:
        rel = f.relative_to(ROOT).as_posix()
        for module, _ in _imports(f):
            head = module.split(".")[0]
            if head not in PROJECT or head == room:
                continue
            if not _allowed(module, ALLOWED[room]):
                bad.append(f"{rel} imports {module}")
            elif room == "rig" and head == "world" and not rel.startswith(RIG_WORLD_USERS):
                bad.append(f"{rel} imports {module}: only the simulated devices render the world")
    assert not bad, "\n".join(bad)


def test_every_room_is_covered() -> None:
    rooms = {*PACKAGES, *(m.removesuffix(".py") for m in TOP_MODULES)}
    assert rooms == set(ALLOWED)
    for path in (*HARDWARE_WRAPPERS, *RIG_WORLD_USERS):  # no stale entries
        assert (ROOT / path).exists(), path


def test_gui_is_imported_only_by_its_command() -> None:
    users = [f for room in ALLOWED if room not in ("gui", "cli") for f in _room_files(room)]
    users += [f for f in _room_files("cli") if f.name != "gui.py"]
    bad = [str(f.relative_to(ROOT)) for f in users
           if any(m.split(".")[0] == "gui" for m, _ in _imports(f))]
    assert not bad


def test_main_only_dispatches_to_the_command_modules() -> None:
    """Every command lives in cli/, every cli/ module is registered, and nothing else defines
    an argument parser (one place for the command line)."""
    import main

    modules = {f"cli.{f.stem}" for f in (ROOT / "cli").glob("*.py") if f.stem != "__init__"}
    assert set(main.COMMAND_MODULES) == modules
    for name in main.COMMAND_MODULES:
        module = __import__(name, fromlist=["register"])
        assert callable(module.register), name
    product = [f for room in ALLOWED if room not in ("cli", "main") for f in _room_files(room)]
    bad = [str(f.relative_to(ROOT)) for f in product
           if "add_subparsers" in f.read_text() or "ArgumentParser(" in f.read_text()]
    assert not bad, f"command-line parsing outside cli/: {bad}"


def test_hardware_libraries_only_at_module_level_in_their_wrappers() -> None:
    bad = []
    for room in ALLOWED:
        for f in _room_files(room):
            rel = f.relative_to(ROOT).as_posix()
            if any(rel.startswith(w) for w in HARDWARE_WRAPPERS):
                continue
            for module, top_level in _imports(f):
                if top_level and module.split(".")[0] in HARDWARE_LIBS:
                    bad.append(f"{rel} imports {module} at module level")
    assert not bad, "\n".join(bad)


def test_scripts_use_the_installed_project_and_nothing_imports_them() -> None:
    scripts = [f for d in SCRIPT_DIRS for f in sorted((ROOT / d).rglob("*.py"))]
    assert scripts
    bad = [str(f.relative_to(ROOT)) for f in scripts if "sys.path.insert" in f.read_text()]
    assert not bad, f"sys.path hacks (the project is installed editable): {bad}"
    product = [f for room in ALLOWED for f in _room_files(room)]
    bad = [str(f.relative_to(ROOT)) for f in product
           if any(m.split(".")[0] in ("bench", "scripts") for m, _ in _imports(f))]
    assert not bad


def test_code_and_docs_cite_the_projects_own_documents() -> None:
    """The design brief lives outside the repository: cite docs/ and the seed papers instead."""
    files = [*(f for room in ALLOWED for f in _room_files(room)),
             *(f for d in (*SCRIPT_DIRS, "tests") for f in (ROOT / d).rglob("*.py")),
             *(ROOT / "docs").glob("*.md"), ROOT / "README.md"]
    bad = [str(f.relative_to(ROOT)) for f in files if re.search(r"DESIGN\.md", f.read_text())
           and f.name != "test_architecture.py"]
    assert not bad


def test_one_definition_of_each_shared_thing() -> None:
    """Exit codes and error bases are defined in errors.py only; verdicts in recordings.schema."""
    product = [f for room in ALLOWED for f in _room_files(room)]
    patterns = {
        "exit code": re.compile(r"^EXIT_\w+\s*(,\s*EXIT_\w+\s*)*=", re.M),
        "error base on Exception": re.compile(r"^class [A-Z]\w*Error\((Exception|RuntimeError)\)",
                                              re.M),
        "verdict rule": re.compile(r"\"FAIL\" if .*scratches"),
    }
    bad = []
    for f in product:
        text = f.read_text()
        for what, pattern in patterns.items():
            if pattern.search(text) and f.name != "errors.py":
                bad.append(f"{f.relative_to(ROOT)}: {what}")
    assert not bad, "\n".join(bad)
