"""``main.py devices``: what hardware this computer can see, and (``--probe``) whether the
station's configured devices answer.

Works with no hardware at all (every section says "none" rather than failing), so it is the
first thing to run on a new station and the thing to paste into a support request.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from errors import EXIT_FAIL, EXIT_OK


@dataclass
class Section:
    title: str
    rows: list[str] = field(default_factory=list)
    data: list[dict[str, Any]] = field(default_factory=list)
    error: str = ""
    ok: bool = True


def _serial_ports() -> Section:
    sec = Section("Serial ports")
    try:
        from serial.tools import list_ports
    except ImportError as exc:
        sec.error = f"pyserial unavailable: {exc}"
        return sec
    for p in sorted(list_ports.comports(), key=lambda p: p.device):
        ids = f"{p.vid:04x}:{p.pid:04x}" if p.vid is not None and p.pid is not None else ""
        sn = f" serial={p.serial_number}" if p.serial_number else ""
        sec.rows.append(f"{p.device}  {p.description or ''}  {ids}{sn}".rstrip())
        sec.data.append({"device": p.device, "description": p.description, "hwid": p.hwid,
                         "vid": p.vid, "pid": p.pid, "serial_number": p.serial_number})
    return sec


def _producers() -> tuple[Section, list[Path], Path | None]:
    from rig.cameras.genicam import GENTL_ENV, bundled_producer, find_producers

    sec = Section("GenTL producers")
    env = os.environ.get(GENTL_ENV, "")
    found = find_producers()
    sec.rows.append(f"{GENTL_ENV} = {env or '(not set)'}")
    for entry in filter(None, env.split(os.pathsep)):
        if not Path(entry).exists():
            sec.rows.append(f"  {entry}: does not exist")
    for p in found:
        sec.rows.append(f"  {p}")
        sec.data.append({"path": str(p), "source": GENTL_ENV})
    bundled = bundled_producer()
    if bundled is not None:
        sec.rows.append(f"  {bundled}  (bundled test producer of the genicam package: "
                        "simulated devices)")
        sec.data.append({"path": str(bundled), "source": "genicam package (test producer)"})
    if not found and bundled is None:
        sec.rows.append("  none")
    return sec, found, bundled


def _cameras(found: list[Path], bundled: Path | None) -> list[Section]:
    from rig.camera import CameraError, list_cameras

    out = []
    pylon = Section("Cameras: pylon (Basler)")
    try:
        cams = list_cameras("pylon")
        for c in cams:
            emu = "  (emulator)" if c.extra.get("device_class") == "BaslerCamEmu" else ""
            pylon.rows.append(f"{c.index}: {c.describe()}{emu}")
            pylon.data.append(_info_dict(c))
        if not cams:
            pylon.rows.append("none (set PYLON_CAMEMU=1 to list the Basler emulator)")
    except (CameraError, Exception) as exc:  # noqa: BLE001 - a report, never a crash
        pylon.error = f"unavailable: {exc}"
    out.append(pylon)

    for label, producers in (("GENICAM_GENTL64_PATH", found),
                             ("bundled test producer", [bundled] if bundled else [])):
        sec = Section(f"Cameras: genicam via {label}")
        if not producers:
            sec.rows.append("no producer")
            out.append(sec)
            continue
        try:
            cams = list_cameras("genicam", cti=producers)
            for c in cams:
                sec.rows.append(f"{c.index}: {c.describe()}  producer={c.extra.get('producer')}")
                sec.data.append(_info_dict(c))
            if not cams:
                sec.rows.append("none")
        except Exception as exc:  # noqa: BLE001
            sec.error = f"unavailable: {exc}"
        out.append(sec)

    sim = Section("Cameras: sim")
    for c in list_cameras("sim"):
        sim.rows.append(f"{c.index}: {c.describe()}")
        sim.data.append(_info_dict(c))
    out.append(sim)
    return out


def _info_dict(c: Any) -> dict[str, Any]:
    d = asdict(c)
    d["extra"] = {k: str(v) for k, v in c.extra.items()}
    return d


# -- probing a configured station ----------------------------------------------------------------
def _probe_camera(cfg: Any) -> Section:
    """Open the configured camera, take one software-triggered frame, report it."""
    from rig.camera import open_camera

    cam_cfg = cfg.camera
    sec = Section(f"Probe: camera ({cam_cfg.backend}, serial {cam_cfg.serial or 'first found'})")
    options: dict[str, Any] = {}
    if cam_cfg.backend == "sim":
        from rig.cameras.sim import sim_options

        options = {**sim_options(cfg), "realtime": False}
    t0 = time.monotonic()
    try:
        with open_camera(cam_cfg, **options) as cam:
            sec.rows.append(f"opened {cam.info.describe()} in {time.monotonic() - t0:.2f} s")
            s = cam.configure(trigger="software")
            sec.rows.append(f"configured {s.pixel_format} {s.width}x{s.height}, exposure "
                            f"{s.exposure_us} us, gain {s.gain_db} dB (trigger set to software "
                            "for the probe)")
            cam.arm()
            t1 = time.monotonic()
            cam.trigger()
            frame = cam.grab()
            img = frame.image
            sec.rows.append(f"frame {frame.frame_id}: {img.shape[1]}x{img.shape[0]} {img.dtype}, "
                            f"min {int(img.min())} mean {float(img.mean()):.1f} max "
                            f"{int(img.max())}, in {time.monotonic() - t1:.3f} s")
            sec.data.append({"info": _info_dict(cam.info), "frame_id": frame.frame_id,
                             "shape": list(img.shape), "mean": float(img.mean())})
    except Exception as exc:  # noqa: BLE001 - the probe reports, the operator fixes
        sec.ok = False
        sec.error = f"{type(exc).__name__}: {exc}"
    return sec


def _probe_port(name: str, settings: Any) -> Section:
    """A configured serial device: is the port there and can it be opened? (Protocol checks
    belong to the stage / ring-light drivers.)"""
    sec = Section(f"Probe: {name} port {settings.port}")
    if settings.port == "sim":
        sec.rows.append("emulator on a pseudo-terminal (started with the simulated bench)")
        return sec
    try:
        import serial

        with serial.serial_for_url(settings.port, baudrate=settings.baudrate, timeout=0.5):
            sec.rows.append(f"opened at {settings.baudrate} baud")
    except Exception as exc:  # noqa: BLE001
        sec.ok = False
        sec.error = f"cannot open {settings.port}: {exc}"
    return sec


PROBES: list[Callable[[Any], Section]] = [
    lambda cfg: _probe_port("stage", cfg.stage),
    lambda cfg: _probe_port("ring light", cfg.light),
    _probe_camera,
]


def run(args: argparse.Namespace) -> int:
    sections: list[Section] = [_serial_ports()]
    try:
        producers, found, bundled = _producers()
        sections.append(producers)
    except Exception as exc:  # noqa: BLE001
        sections.append(Section("GenTL producers", error=f"unavailable: {exc}"))
        found, bundled = [], None
    sections += _cameras(found, bundled)
    status = EXIT_OK
    if args.probe:
        from rig.config import load_config

        cfg = load_config(args.config)
        sections.append(Section(f"Station {cfg.station.name} ({cfg.source})"))
        for probe in PROBES:
            sec = probe(cfg)
            sections.append(sec)
            if not sec.ok:
                status = EXIT_FAIL
    if args.json:
        print(json.dumps([asdict(s) for s in sections], indent=2, default=str))
    else:
        for sec in sections:
            mark = "" if sec.ok else "  FAILED"
            print(f"{sec.title}{mark}")
            for row in sec.rows:
                print(f"  {row}")
            if sec.error:
                print(f"  {sec.error}")
    return status


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "devices", help="list serial ports, GenTL producers and cameras; probe a station",
        description="List serial ports, GenTL producers (GENICAM_GENTL64_PATH and the bundled "
                    "test producer) and cameras per backend (pylon, genicam, sim). With --probe, "
                    "open the devices of a station config and take one camera frame. Exit "
                    "status 1 when a probe fails.")
    p.add_argument("--probe", action="store_true",
                   help="open the configured devices and check they answer")
    p.add_argument("--config", default=None,
                   help="station TOML file for --probe (default: the bundled sim profile)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)
