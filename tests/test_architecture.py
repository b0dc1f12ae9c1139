"""The dependency rules of DESIGN.md section 2, checked on the source (imports, via ast)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("rig", "recordings", "inference", "gui", "calibration")
HARDWARE_LIBS = ("pypylon", "harvesters", "serial", "PySide6", "pyqtgraph")

FORBIDDEN = {
    "recordings": {"rig", "inference", "gui", "calibration", "inspection"},
    "rig": {"inference", "gui", "calibration", "inspection"},
    "inference": {"rig", "gui", "inspection"},  # rig.sim allowed for training-data generation
    "calibration": {"gui", "inspection"},
}
# Modules that wrap a hardware / GUI library and may import it at module level.
HARDWARE_WRAPPERS = ("rig/grbl.py", "rig/ringlight.py", "rig/cameras/", "rig/devices_cli.py",
                     "rig/sim/serial_server.py", "gui/", "rig/serial_link.py")


def _imports(path: Path) -> list[tuple[str, bool]]:
    """(module, at_module_level) for every import in a file."""
    tree = ast.parse(path.read_text(), str(path))
    top = {id(n) for n in tree.body}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, id(node) in top) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.module, id(node) in top))
    return out


def _files(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_dependency_rules(package: str) -> None:
    bad = []
    for f in _files(package):
        for module, _ in _imports(f):
            head = module.split(".")[0]
            if head in FORBIDDEN[package] and not (package == "inference"
                                                   and module.startswith("rig.sim")):
                bad.append(f"{f.relative_to(ROOT)} imports {module}")
    assert not bad, "\n".join(bad)


def test_gui_is_imported_only_by_main() -> None:
    users = [f for p in PACKAGES if p != "gui" for f in _files(p)] + [ROOT / "inspection.py"]
    bad = [str(f.relative_to(ROOT)) for f in users if f.exists()
           and any(m.split(".")[0] == "gui" for m, _ in _imports(f))]
    assert not bad


def test_hardware_libraries_only_at_module_level_in_their_wrappers() -> None:
    bad = []
    for p in PACKAGES:
        for f in _files(p):
            rel = f.relative_to(ROOT).as_posix()
            if any(rel.startswith(w) for w in HARDWARE_WRAPPERS):
                continue
            for module, top_level in _imports(f):
                if top_level and module.split(".")[0] in HARDWARE_LIBS:
                    bad.append(f"{rel} imports {module} at module level")
    assert not bad, "\n".join(bad)
