"""Screenshots of the real operator window during and after a simulated scan (for the README).

Run under a virtual X server so the window goes through the real xcb platform:

    xvfb-run -a -s "-screen 0 1920x1080x24" .venv/bin/python docs/screenshots/take_screenshots.py

It builds the simulated bench (emulated GRBL stage and ring light on pseudo-terminals, rendered
camera) and the bundled detector, and for each window size (default 1366 x 768, the smallest
supported, and 1920 x 1080) scans one sample from the window and grabs the X screen:

- gui-scanning-WxH.png: mid-scan, live tiles of the RoI being captured, map filling in;
- gui-paused-WxH.png: the same scan paused at a safe point;
- gui-verdict-WxH.png: the verdict, a scratch selected in the table and zoomed, its signature;
- gui-error-WxH.png: a jog beyond the stage travel refused by GRBL, in the error panel;
- gui-replay-WxH.png: the recording reopened in replay with the probability heat map.

The virtual sample series uses scratch_fraction 1.0 so the pictures show a scratch.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
OUT = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sensor", default="3504x3120")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--no-detector", action="store_true")
    ap.add_argument("--sizes", nargs="+", default=["1366x768", "1920x1080"],
                    help="window sizes, WxH")
    args = ap.parse_args(argv)
    if not os.environ.get("DISPLAY"):
        print("no DISPLAY: run under xvfb-run (see the docstring); using offscreen instead",
              file=sys.stderr)
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

    from PySide6 import QtCore, QtWidgets

    from cli.gui import apply_dark_theme, detector_factory, rig_factory
    from gui.app import MainWindow
    from rig.config import load_config, parse_config

    w, h = (int(v) for v in args.sensor.lower().split("x"))
    rec_dir = Path(tempfile.mkdtemp(prefix="screenshots-"))
    data = load_config().simulated().to_json_dict()
    data["camera"].update(width=w, height=h)
    data["paths"]["recordings"] = str(rec_dir)
    data["sim"].update(seed=args.seed, scratch_fraction=1.0)
    cfg = parse_config(data, "bundled profile 'sim'")

    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication(sys.argv[:1])
    apply_dark_theme(app)
    win = MainWindow(cfg, rig_factory=rig_factory(cfg),
                     detector_factory=None if args.no_detector else detector_factory(cfg),
                     out_dir=rec_dir)
    win.move(0, 0)
    win.show()

    def spin(cond=lambda: False, timeout_s: float = 0.3) -> bool:
        t_end = time.monotonic() + timeout_s
        while not cond():
            if time.monotonic() > t_end:
                return False
            app.processEvents(QtCore.QEventLoop.ProcessEventsFlag.AllEvents, 20)
            time.sleep(0.005)
        return True

    size = ""

    def shot(what: str) -> Path:
        name = f"gui-{what}-{size}.png"
        win.stack.flush_now()
        spin(timeout_s=0.4)
        screen = app.primaryScreen()
        g = win.frameGeometry()
        img = screen.grabWindow(0, g.x(), g.y(), g.width(), g.height()) \
            if app.platformName() == "xcb" else win.grab()
        path = args.out / name
        img.save(str(path))
        try:  # 256 colours: a third of the size, no visible change on this dark UI
            from PIL import Image

            Image.open(path).convert("RGB").quantize(256, method=Image.Quantize.FASTOCTREE,
                                                      dither=Image.Dither.NONE).save(path,
                                                                                     optimize=True)
        except ImportError:
            pass
        print(f"wrote {path} ({img.width()}x{img.height()}, platform {app.platformName()})")
        return path

    if not spin(lambda: win.rig is not None or bool(win.rig_error), 180) or win.rig is None:
        print(f"error: simulated rig not available: {win.rig_error}", file=sys.stderr)
        return 2

    def scan_and_shoot(sample_id: str) -> None:
        win.controls.auto_id.setChecked(False)
        win.controls.sample_id.setText(sample_id)
        win.controls.start_btn.click()

        # mid-scan: RoIs captured and some already judged, the newest RoI's tiles on screen
        def mid_scan() -> bool:
            ls = win.live_sample
            return (ls is not None and ls.scanning and len(ls.recorded) >= 5
                    and sum(st in ("clean", "scratch") for st in ls.states.values()) >= 2
                    and win.stack.current is not None)

        spin(mid_scan, 900)
        shot("scanning")
        win.controls.pause_btn.click()
        spin(lambda: win.verdict.text == "PAUSED", 60)
        spin(timeout_s=1.0)
        shot("paused")
        win.controls.pause_btn.click()  # resume

        spin(lambda: not win.scanning and win.last_result is not None, 1800)
        result = win.last_result
        print(result.summary_line())
        scratches = [o for k, o in win.table.objects if k == "scratch"]
        if scratches:
            obj = max(scratches, key=lambda o: o.score)
            win.select_object("scratch", obj)
            spin(lambda: win.stack.current is not None and win.stack.roi_index == obj.roi
                 and win.stack.current.stack is not None, 60)
            win.stack.select_box(obj.box_px)
            stack = win.stack.current.stack
            r0, c0, r1, c1 = obj.box_px
            peak = np.asarray(stack[:, r0:r1, c0:c1]).max(axis=0)
            i, j = np.unravel_index(int(np.argmax(peak)), peak.shape)
            win.show_signature(r0 + i, c0 + j)
            spin(lambda: win.stack.detail_shown, 10)
        shot("verdict")

        x_max = cfg.stage.x_limits_mm[1]
        win._jog(x_max + 50.0, 0.0)  # beyond the travel: GRBL's own refusal, in plain words
        spin(lambda: win.error_panel.isVisible(), 30)
        spin(timeout_s=0.5)
        shot("error")
        win.error_panel.clear()

        win.open_recording(result.recording)
        spin(lambda: win.sample is not None and not win.sample.live and win.stack.current
             is not None, 60)
        if scratches:  # the scratch's surroundings with the probability heat map, and a dust
            win.stack.show_heat.setChecked(True)  # signature to contrast with the scratch's
            win.select_object("scratch", obj)
            spin(lambda: win.stack.roi_index == obj.roi and win.stack.current is not None
                 and win.stack.current.stack is not None, 60)
            r0, c0, r1, c1 = obj.box_px
            side = 1400
            win.stack.lead.setRange(QtCore.QRectF((c0 + c1 - side) / 2, (r0 + r1 - side) / 2,
                                                           side, side), padding=0)
            stack = win.stack.current.stack
            dust = [o for k, o in win.table.objects if k == "contaminant" and o.roi == obj.roi]
            if dust:
                def peak(o):
                    a0, b0, a1, b1 = o.box_px
                    return np.asarray(stack[:, a0:a1, b0:b1]).min(axis=0).max()

                d = max(dust, key=peak)
                a0, b0, a1, b1 = d.box_px
                crop = np.asarray(stack[:, a0:a1, b0:b1]).min(axis=0)
                i, j = np.unravel_index(int(np.argmax(crop)), crop.shape)
                win.show_signature(a0 + i, b0 + j)
            spin(timeout_s=1.0)
        win.tabs.setCurrentIndex(1)
        spin(timeout_s=1.0)
        shot("replay")
        win.tabs.setCurrentIndex(0)
        win.stack.show_heat.setChecked(False)

    spin(lambda: win.ready or bool(win.rig_error), 300)
    for n, size in enumerate(args.sizes, start=1):
        win.resize(*(int(v) for v in size.lower().split("x")))
        win.back_to_live()
        spin(timeout_s=0.5)
        scan_and_shoot(f"DEMO-{n:04d}")
    win.close()
    shutil.rmtree(rec_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
