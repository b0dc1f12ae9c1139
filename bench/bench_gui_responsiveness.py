"""How long does the operator window's event loop stall while a simulated scan runs?

A QTimer heartbeat fires every --interval-ms in the GUI thread; every gap longer than the
interval is time the window could not repaint or react to a click. The longest gap minus the
interval, over whole scans on the real simulated bench (emulators + rendered camera + detector),
is the stall figure. Target: under 100 ms.

    python bench/bench_gui_responsiveness.py                      # full 3504 x 3120 sensor
    python bench/bench_gui_responsiveness.py --sensor 1024x1024 --samples 2
    python bench/bench_gui_responsiveness.py --no-detector        # acquisition + recording only

Runs offscreen unless a display is set (e.g. under xvfb-run). Exit status 1 when the target
is missed.
"""

from __future__ import annotations

import argparse
import faulthandler
import gc
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET_MS = 100.0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sensor", default="3504x3120", help="camera WxH (default full size)")
    ap.add_argument("--samples", type=int, default=1)
    ap.add_argument("--interval-ms", type=float, default=10.0)
    ap.add_argument("--no-detector", action="store_true", help="record only, no detection")
    ap.add_argument("--fast", action="store_true",
                    help="simulated devices take no real time (stresses the window harder)")
    ap.add_argument("--timeout-s", type=float, default=1800.0)
    ap.add_argument("--dump-stalls", type=Path, default=None, metavar="FILE",
                    help="write every thread's stack to FILE whenever the event loop misses "
                         "its beat for 80 ms (faulthandler: works while another thread holds "
                         "the GIL), to see what a stall was made of")
    ap.add_argument("--keep", action="store_true", help="keep the recordings (temp folder)")
    ap.add_argument("--baseline-s", type=float, default=20.0,
                    help="first measure the idle window this long: the stall the machine's "
                         "other load causes without any scan (0: skip)")
    args = ap.parse_args(argv)
    if not os.environ.get("DISPLAY"):
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

    from PySide6 import QtCore, QtWidgets

    from cli.gui import apply_dark_theme, detector_factory, rig_factory
    from gui.app import MainWindow
    from rig.config import load_config, parse_config

    w, h = (int(v) for v in args.sensor.lower().split("x"))
    out = Path(tempfile.mkdtemp(prefix="bench-gui-"))
    data = load_config().simulated().to_json_dict()
    data["camera"].update(width=w, height=h)
    data["paths"]["recordings"] = str(out)
    data["sim"]["realtime"] = not args.fast
    cfg = parse_config(data, f"bench {w}x{h}")

    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication(sys.argv[:1])
    apply_dark_theme(app)
    win = MainWindow(cfg, rig_factory=rig_factory(cfg),
                     detector_factory=None if args.no_detector else detector_factory(cfg),
                     out_dir=out)
    win.resize(1600, 1000)
    win.show()

    def spin_until(cond, timeout_s: float) -> bool:
        t_end = time.monotonic() + timeout_s
        while not cond():
            if time.monotonic() > t_end:
                return False
            app.processEvents(QtCore.QEventLoop.ProcessEventsFlag.AllEvents, 20)
            time.sleep(0.002)
        return True

    if not spin_until(lambda: win.rig is not None or win.rig_error, 120):
        print("error: the simulated rig did not come up in 120 s", file=sys.stderr)
        return 2
    if win.rig is None:
        print(f"error: no rig: {win.rig_error}", file=sys.stderr)
        return 2
    if not args.no_detector:
        spin_until(lambda: win.ready, 300)

    gaps: list[float] = []
    last = [time.perf_counter()]
    beating = [False]

    dump_file = args.dump_stalls.open("w") if args.dump_stalls else None

    def beat() -> None:
        if dump_file is not None and beating[0]:
            faulthandler.cancel_dump_traceback_later()
            faulthandler.dump_traceback_later(0.08, file=dump_file)
        now = time.perf_counter()
        if beating[0]:
            gaps.append(now - last[0])
        last[0] = now

    timer = QtCore.QTimer()
    timer.setTimerType(QtCore.Qt.TimerType.PreciseTimer)
    timer.timeout.connect(beat)
    timer.start(int(args.interval_ms))

    baseline_ms = None
    if args.baseline_s > 0:
        spin_until(lambda: False, 0.2)
        last[0] = time.perf_counter()
        beating[0] = True
        spin_until(lambda: False, args.baseline_s)
        beating[0] = False
        baseline_ms = max(0.0, (max(gaps) - args.interval_ms / 1000) * 1000) if gaps else 0.0
        idle_gaps = list(gaps)
        gaps.clear()

    gc_pauses: list[tuple[int, float]] = []
    gc_start = [0.0]

    def on_gc(phase: str, info: dict) -> None:  # any thread; a collection holds the GIL
        if phase == "start":
            gc_start[0] = time.perf_counter()
        else:
            gc_pauses.append((info["generation"], time.perf_counter() - gc_start[0]))

    gc.callbacks.append(on_gc)
    results = []
    load_before = os.getloadavg()[0]
    cpu0 = time.thread_time()
    t0 = time.monotonic()
    for _ in range(args.samples):
        done_before = len(win.verdict.entries)
        spin_until(lambda: False, 0.2)  # settle
        last[0] = time.perf_counter()
        beating[0] = True
        win.start_inspection()
        ok = spin_until(lambda n=done_before: len(win.verdict.entries) > n and not win.scanning,
                        args.timeout_s)
        beating[0] = False
        if not ok:
            print("error: the scan did not finish in time", file=sys.stderr)
            return 2
        results.append(win.last_result)
    wall = time.monotonic() - t0
    if dump_file is not None:
        faulthandler.cancel_dump_traceback_later()
        dump_file.close()
    gui_cpu = time.thread_time() - cpu0
    gc.callbacks.remove(on_gc)
    load_after = os.getloadavg()[0]
    timer.stop()

    interval = args.interval_ms / 1000
    longest = max(gaps) if gaps else 0.0
    stall_ms = max(0.0, (longest - interval) * 1000)
    srt = sorted(gaps)
    p99 = srt[int(0.99 * (len(srt) - 1))] if srt else 0.0
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"load average {load_before:.1f} -> {load_after:.1f} (other processes compete for "
          f"the cores), Qt platform {app.platformName()}")
    print(f"scan: {args.samples} sample(s), sensor {w}x{h}, realtime={not args.fast}, "
          f"detector={'off' if args.no_detector else getattr(win.detector, 'name', '?')}, "
          f"wall {wall:.1f} s")
    for r in results:
        print(f"  {r.summary_line()}")
    print(f"heartbeat every {args.interval_ms:.0f} ms: {len(gaps)} beats, p99 gap "
          f"{p99 * 1000:.1f} ms, gaps > 50 ms: {sum(g > 0.05 for g in gaps)}, "
          f"> 100 ms: {sum(g > 0.1 for g in gaps)}")
    print(f"GUI thread CPU: {gui_cpu:.1f} s of {wall:.1f} s ({100 * gui_cpu / wall:.0f} %)")
    print(f"live view: {win.stack.redraws} redraws, {win.preview.dropped_frames} live frames "
          f"dropped by the preview thread (by design, never queued)")
    if gc_pauses:
        gen, worst = max(gc_pauses, key=lambda p: p[1])
        print(f"garbage collections: {len(gc_pauses)}, longest {worst * 1000:.0f} ms "
              f"(generation {gen}; it stops every thread)")
    if baseline_ms is not None:
        print(f"idle window, same machine, no scan ({args.baseline_s:.0f} s): longest stall "
              f"{baseline_ms:.0f} ms, gaps > 50 ms: {sum(g > 0.05 for g in idle_gaps)}")
    print(f"longest event-loop stall while scanning: {stall_ms:.0f} ms "
          f"(longest gap {longest * 1000:.0f} ms; target < {TARGET_MS:.0f} ms)")
    win.close()
    if not args.keep:
        shutil.rmtree(out, ignore_errors=True)  # ~430 MB per full-size sample
    return 0 if stall_ms < TARGET_MS else 1


if __name__ == "__main__":
    sys.exit(main())
