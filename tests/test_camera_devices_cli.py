"""`devices`: lists ports, producers and cameras with or without hardware, and probes a
configured station (exit status 1 when a configured device does not answer)."""

from __future__ import annotations

import argparse
import json

import pytest

from cli import devices as devices_cli


def run(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    devices_cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["devices", *argv])
    return args.func(args)


def test_lists_without_hardware(capsys, monkeypatch):
    monkeypatch.delenv("PYLON_CAMEMU", raising=False)
    monkeypatch.delenv("GENICAM_GENTL64_PATH", raising=False)
    assert run() == 0
    out = capsys.readouterr().out
    for title in ("Serial ports", "GenTL producers", "Cameras: pylon", "Cameras: genicam",
                  "Cameras: sim"):
        assert title in out
    assert "GENICAM_GENTL64_PATH = (not set)" in out
    assert "SIM-0001" in out


def test_lists_emulated_and_producer_cameras_as_json(capsys, monkeypatch):
    monkeypatch.setenv("PYLON_CAMEMU", "1")
    assert run("--json") == 0
    sections = {s["title"]: s for s in json.loads(capsys.readouterr().out)}
    pylon = sections["Cameras: pylon (Basler)"]
    if not pylon["error"]:  # pypylon loads here: the emulator must be listed
        assert any(c["serial"] == "0815-0000" for c in pylon["data"])
    viky = sections["Cameras: genicam via bundled test producer"]
    if not viky["error"] and viky["data"]:
        assert {c["serial"] for c in viky["data"]} == {"0", "1", "2"}


def test_probe_sim_profile(capsys):
    assert run("--probe") == 0
    out = capsys.readouterr().out
    assert "Probe: camera (sim" in out and "frame 0: 3504x3120 uint16" in out


def test_probe_failure_is_exit_status_1(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("PYLON_CAMEMU", raising=False)
    station = tmp_path / "station.toml"
    station.write_text('[camera]\nbackend = "pylon"\nserial = "40000001"\n'
                       '[stage]\nport = "/dev/does-not-exist"\n')
    assert run("--probe", "--config", str(station)) == 1
    out = capsys.readouterr().out
    assert "cannot open /dev/does-not-exist" in out
    assert "40000001" in out and "FAILED" in out


def test_probe_unknown_config_file_is_a_config_error(tmp_path):
    from rig.config import ConfigError

    with pytest.raises(ConfigError):
        run("--probe", "--config", str(tmp_path / "nope.toml"))
