"""`gui [--config F] [--sim] [--replay FILE]`: the operator window."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "gui", help="operator window: live scan, verdicts, manual devices, replay",
        description="Open the operator window. Inspections run on the station in --config "
                    "(default: the bundled simulated bench); --replay opens a recording without "
                    "connecting to any device.")
    p.add_argument("--config", type=Path, default=None,
                   help="station TOML file (default: bundled 'sim' profile)")
    p.add_argument("--sim", action="store_true",
                   help="use the simulated bench devices whatever the station file says")
    p.add_argument("--replay", type=Path, default=None, metavar="FILE",
                   help="open this recording (complete or not); no devices are opened")
    p.add_argument("--out", type=Path, default=None,
                   help="folder for new recordings (default: [paths] recordings of the config)")
    p.add_argument("--model", default=None,
                   help="detector weights (.safetensors); default: the configured one")
    p.add_argument("--no-detector", action="store_true",
                   help="record only; verdicts are NOT-INSPECTED")
    p.set_defaults(func=run)


def rig_factory(cfg: Any):
    """Built on the device thread: opening ports and homing take seconds. The rig uses the
    station's calibration exactly as `scan` does (station.py)."""
    def build() -> Any:
        from station import open_rig, station_calibration

        return open_rig(cfg, station_calibration(cfg))

    return build


def detector_factory(cfg: Any, model: str | None = None):
    """Load the detector on the device thread and run it once on a small dark stack, so the
    first sample of the shift pays no first-call costs (lazy imports, kernel selection) while
    the operator watches."""
    def load() -> Any:
        import numpy as np

        from station import build_detector, station_calibration

        det = build_detector(cfg, station_calibration(cfg), model)
        probe = np.full((cfg.scan.states, 256, 256), cfg.camera.black_level_dn, np.uint16)
        probe[min(1, cfg.scan.states - 1), 120:123, 20:236] += 1500  # a scratch-like line
        probe[:, 40:52, 40:52] += 2500  # and a dust-like blob: every code path runs once
        try:
            det.detect_roi(probe, 0, (0, 0), cfg.scan.pixel_size_mm)
        except Exception as exc:  # a failed warm-up is not a failed detector
            log.warning("detector warm-up failed: %s", exc)
        return det

    return load


def apply_dark_theme(app: Any) -> None:
    from PySide6 import QtGui

    app.setStyle("Fusion")
    pal = QtGui.QPalette()
    c = QtGui.QColor
    roles = QtGui.QPalette.ColorRole
    for role, color in ((roles.Window, c(36, 39, 44)), (roles.WindowText, c(220, 223, 228)),
                        (roles.Base, c(26, 28, 32)), (roles.AlternateBase, c(40, 43, 48)),
                        (roles.Text, c(220, 223, 228)), (roles.Button, c(48, 52, 58)),
                        (roles.ButtonText, c(220, 223, 228)), (roles.Highlight, c(44, 100, 170)),
                        (roles.HighlightedText, c(255, 255, 255)), (roles.ToolTipBase, c(50, 54, 60)),
                        (roles.ToolTipText, c(230, 230, 230)), (roles.PlaceholderText, c(130, 136, 145))):
        pal.setColor(role, color)
    pal.setColor(QtGui.QPalette.ColorGroup.Disabled, roles.ButtonText, c(120, 125, 132))
    pal.setColor(QtGui.QPalette.ColorGroup.Disabled, roles.WindowText, c(120, 125, 132))
    pal.setColor(QtGui.QPalette.ColorGroup.Disabled, roles.Text, c(120, 125, 132))
    app.setPalette(pal)


def build_window(args: argparse.Namespace) -> Any:
    """Create the window for parsed arguments (needs a QApplication)."""
    from gui.app import MainWindow
    from station import load_station_config

    cfg = load_station_config(args.config, sim=args.sim)
    if args.replay is not None and args.config is None and not args.sim:
        win = MainWindow(cfg, out_dir=args.out)  # viewer only: no devices
    else:
        win = MainWindow(cfg, rig_factory=rig_factory(cfg),
                         detector_factory=None if args.no_detector else detector_factory(cfg, args.model),
                         out_dir=args.out)
    win.restore_layout()  # as the operator left it last time
    if args.replay is not None:
        win.open_recording(args.replay)
    return win


def run(args: argparse.Namespace) -> int:
    from gui import qt_binding_problem

    problem = qt_binding_problem()
    if problem:
        print(f"error: cannot open the window: {problem}", file=sys.stderr)
        return 2
    from PySide6 import QtWidgets

    from recordings.errors import RecordingError

    if args.replay is not None and not args.replay.is_file():
        raise RecordingError(f"{args.replay}: no such file")
    from gui.lifetime import collect_garbage_in_event_loop

    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication(sys.argv[:1])
    apply_dark_theme(app)
    collect_garbage_in_event_loop(app)
    win = build_window(args)
    win.show()
    return int(app.exec())
