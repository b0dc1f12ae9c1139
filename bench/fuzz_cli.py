"""Fuzz the command line as a hostile tester would: bad configs, recordings and model files.

Each case is one `main.py` process on a damaged input, with a time limit and a memory limit
(RLIMIT_DATA), run two at a time. Every outcome is sorted into:
  handled     exit 0, 1 or 2 and no traceback (the program understood the input or its fault)
  traceback   exit 3 (an internal error) or a Python traceback on stderr
  hang        killed at the time limit
  memory      a MemoryError, or killed by a signal (out of memory, segfault)
The figures go to the README; the unit tests (tests/test_fuzz_*.py) hold the same families
in-process with hypothesis. Deterministic for a --seed.

    python bench/fuzz_cli.py --runs 200 --seed 0
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

ROOT = Path(__file__).resolve().parents[1]

SMALL_STATION = """[camera]
width = 256
height = 256
exposure_us = 2000.0
[sim]
realtime = false
[detector]
threads = 1
"""
WEIRD_VALUES = ["inf", "nan", "-inf", "1e15", "-1", "0", "100000", '""', '"x"', "true", "[]",
                "[nan, nan]", "[1e308, 1e308]", "{}", "1e-300", "9999999999999999999"]
CONFIG_KEYS = {"stage": ["max_speed_mm_s", "acceleration_mm_s2", "settle_s", "x_limits_mm",
                         "command_timeout_s", "port"],
               "camera": ["width", "height", "exposure_us", "gain_db", "readout_s", "backend"],
               "scan": ["columns", "rows", "min_overlap_px", "pixel_size_mm", "states"],
               "detector": ["tile_px", "batch_size", "threads", "t_low", "t_high", "engine"],
               "light": ["facet_levels", "trigger_pulse_us"], "sim": ["seed", "realtime"]}


@dataclass
class Case:
    family: str
    label: str
    argv: list[str]


@dataclass
class Outcome:
    case: Case
    kind: str
    rc: int | None
    seconds: float
    max_rss_mb: float
    tail: str


def _limit_memory(limit_bytes: int) -> None:
    resource.setrlimit(resource.RLIMIT_DATA, (limit_bytes, limit_bytes))


def run_case(case: Case, timeout_s: float, memory_bytes: int) -> Outcome:
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "main.py", *case.argv], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            preexec_fn=lambda: _limit_memory(memory_bytes),
                            env={**os.environ, "QT_QPA_PLATFORM": "offscreen"})
    try:
        _, err_bytes = proc.communicate(timeout=timeout_s)
        hung = False
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err_bytes = proc.communicate()
        hung = True
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)  # max over children so far
    err = err_bytes.decode("utf-8", "replace")
    rc = proc.returncode
    if hung:
        kind = "hang"
    elif "MemoryError" in err or rc < 0:
        kind = "memory"
    elif rc == 3 or "Traceback" in err:
        kind = "traceback"
    else:
        kind = "handled" if rc in (0, 1, 2) else "traceback"
    return Outcome(case, kind, rc, time.perf_counter() - t0, usage.ru_maxrss / 1024,
                   err.strip().splitlines()[-1][:200] if err.strip() else "")


# ---- inputs ----------------------------------------------------------------------------------

def make_base(work: Path) -> dict[str, Path]:
    """A valid small station, recording, detector and classifier to damage."""
    from inference.classifiers import make_classifier
    from inference.detector import save_model
    from inference.model import NestedUNet, UNetConfig

    station = work / "station.toml"
    station.write_text(SMALL_STATION)
    subprocess.run([sys.executable, "main.py", "--log-dir", str(work / "logs"), "simulate",
                    "--out", str(work / "rec"), "--samples", "1", "--sensor", "256x256",
                    "--config", str(station), "--no-progress"], cwd=ROOT, check=True,
                   stdout=subprocess.DEVNULL)
    recording = next((work / "rec").glob("*.h5"))
    cfg = UNetConfig(encoder_features=(8, 16), encoder_convs=(1, 1), decoder_features=(8,),
                     output_scales=1)
    detector, _ = save_model(NestedUNet(cfg), work / "model" / "tiny")
    rng = np.random.default_rng(0)
    classes = ["crazing", "inclusion", "patches", "pitted_surface", "rolled-in_scale",
               "scratches"]
    clf = make_classifier("ce", input_size=16, epochs=1, batch_size=6).fit(
        rng.normal(100, 10, (12, 1, 16, 16)).astype(np.float32), classes * 2)
    classifier = clf.save(work / "model" / "clf")
    neu = work / "neu" / "images"
    neu.mkdir(parents=True)
    from PIL import Image
    for i, c in enumerate(classes):
        Image.fromarray(rng.integers(0, 255, (40, 40), dtype=np.uint8)).save(
            neu / f"{c}_{i + 1}.jpg")
    return {"station": station, "recording": recording, "detector": detector,
            "classifier": classifier, "neu": neu.parent}


def _damaged_bytes(data: bytes, rnd: random.Random) -> bytes:
    how = rnd.choice(["truncate", "flip", "insert", "zero_block"])
    if how == "truncate":
        return data[:rnd.randrange(0, max(len(data), 1))]
    b = bytearray(data)
    if how == "flip":
        for _ in range(rnd.randint(1, 8)):
            i = rnd.randrange(len(b))
            b[i] ^= 1 << rnd.randrange(8)
    elif how == "insert":
        i = rnd.randrange(len(b) + 1)
        b[i:i] = bytes(rnd.randrange(256) for _ in range(rnd.randint(1, 16)))
    else:
        i = rnd.randrange(len(b))
        b[i:i + rnd.randint(16, 4096)] = bytes(min(4096, len(b) - i))
    return bytes(b)


def config_case(i: int, rnd: random.Random, base: dict[str, Path], work: Path) -> Case:
    path = work / f"cfg{i}.toml"
    if rnd.random() < 0.3:  # bytes of a valid file, damaged
        path.write_bytes(_damaged_bytes(SMALL_STATION.encode(), rnd))
        label = "damaged bytes"
    else:
        sections: dict[str, list[str]] = {"camera": ["width = 256", "height = 256"],
                                          "sim": ["realtime = false"]}
        edits = []
        for _ in range(rnd.randint(1, 3)):
            section = rnd.choice(sorted(CONFIG_KEYS))
            key = rnd.choice(CONFIG_KEYS[section] + ["typo_key"])
            value = rnd.choice(WEIRD_VALUES)
            sections.setdefault(section, []).append(f"{key} = {value}")
            edits.append(f"{section}.{key}={value}")
        path.write_text("\n".join(f"[{s}]\n" + "\n".join(lines)
                                  for s, lines in sections.items()) + "\n")
        label = ", ".join(edits)
    out = work / f"out{i}"
    return Case("config", label, ["--log-dir", str(work / "logs"), "scan", "--config", str(path),
                                  "--sim", "--no-infer", "--out", str(out), "--sample-id",
                                  f"F{i}"])


def _damage_recording(path: Path, rnd: random.Random) -> str:
    how = rnd.choice(["attr", "attr", "delete", "rename", "link", "raw_value", "raw_shape",
                      "bytes", "results"])
    if how == "bytes":
        path.write_bytes(_damaged_bytes(path.read_bytes(), rnd))
        return "damaged bytes"
    with h5py.File(path, "r+") as h5:
        rois = sorted(h5["rois"])
        roi = rnd.choice(rois)
        if how == "attr":
            key = rnd.choice(["n_rois", "status", "format_version", "sample_id", "rig_config"])
            value = rnd.choice([10**15, -1, 0, float("nan"), "x", "", "complete", "{",
                                np.int64(2**62), 3.5])
            h5.attrs[key] = value
            return f"root {key}={value!r}"
        if how == "delete":
            victim = rnd.choice([f"rois/{roi}/raw", f"rois/{roi}", "rois",
                                 f"rois/{roi}/truth"])
            if victim in h5:
                del h5[victim]
            return f"deleted /{victim}"
        if how == "rename":
            new = rnd.choice(["99", "x", "-1", "0000001", "00a"])
            if new not in h5["rois"]:
                h5["rois"].move(roi, new)
            return f"renamed RoI {roi} -> {new}"
        if how == "link":
            kind = rnd.choice(["external", "soft"])
            h5[f"rois/{roi}/x"] = h5py.ExternalLink("/etc/passwd", "/") if kind == "external" \
                else h5py.SoftLink(f"/rois/{roi}/x")
            return f"{kind} link in RoI {roi}"
        if how == "raw_value":
            raw = h5[f"rois/{roi}/raw"]
            raw[0, 0, :] = rnd.randrange(0, 65536)
            return f"raw of RoI {roi} changed"
        if how == "raw_shape":
            del h5[f"rois/{roi}/raw"]
            shape = rnd.choice([(6, 1, 1), (1, 256, 256), (6, 0, 0), (7, 300, 260)])
            h5[f"rois/{roi}"].create_dataset("raw", shape=shape, dtype=rnd.choice(["u2", "f4",
                                                                                   "u1"]))
            return f"raw of RoI {roi} reshaped to {shape}"
        if "results" in h5:
            del h5["results"]
        g = h5.create_group("results")
        g.attrs["verdict"] = rnd.choice(["PASS", 7, ""])
        return "fake /results group"


def recording_case(i: int, rnd: random.Random, base: dict[str, Path], work: Path) -> Case:
    path = work / f"rec{i}.h5"
    shutil.copy(base["recording"], path)
    label = _damage_recording(path, rnd)
    logs = ["--log-dir", str(work / "logs")]
    command = rnd.choice([
        ["recordings", "verify", str(path)], ["recordings", "show", str(path)],
        ["recordings", "export", str(path), "--roi", str(rnd.randrange(-1, 11)), "--png",
         str(work / f"sheet{i}.png")],
        ["infer", str(path), "--model", str(base["detector"]), "--device", "cpu"],
        ["scan", "--config", str(base["station"]), "--sim", "--no-infer", "--resume",
         str(path)]])
    return Case("recording", f"{command[0]} {command[1]}: {label}", logs + command)


CARD_EDITS = [("scaling", "black_level"), ("scaling", "white_level"), ("architecture", "width"),
              ("architecture", "encoder_features"), ("architecture", "in_channels"),
              ("tiling", "tile"), ("tiling", "overlap"), ("postprocess", "t_low"),
              ("postprocess", "t_high"), ("postprocess", "eps"), ("name",), ("typo",)]
CLASSIFIER_EDITS = [("config", "input_size"), ("config", "embed_dim"), ("config", "lr"),
                    ("normalisation", "std"), ("normalisation", "mean"), ("classes",),
                    ("in_channels",), ("method",), ("typo",), ("extra", "n_train_classes")]
CARD_VALUES = [float("nan"), float("inf"), 10**15, -1, 0, 1e6, "x", None, [], {}, [0.0],
               [10**9] * 3, True]


def _edit_card(card: dict, paths: list, rnd: random.Random) -> str:
    edits = []
    for _ in range(rnd.randint(1, 3)):
        keys = rnd.choice(paths)
        value = copy.deepcopy(rnd.choice(CARD_VALUES))
        node = card
        for k in keys[:-1]:
            node = node.setdefault(k, {}) if isinstance(node, dict) else {}
        if isinstance(node, dict):
            node[keys[-1]] = value
        edits.append(f"{'.'.join(keys)}={value!r}")
    return ", ".join(edits)


def model_case(i: int, rnd: random.Random, base: dict[str, Path], work: Path) -> Case:
    classifier = rnd.random() < 0.4
    src = base["classifier" if classifier else "detector"]
    folder = work / f"model{i}"
    folder.mkdir()
    weights = folder / src.name
    shutil.copy(src, weights)
    card_text = src.with_suffix(".json").read_text()
    if rnd.random() < 0.25:
        weights.write_bytes(_damaged_bytes(weights.read_bytes(), rnd))
        weights.with_suffix(".json").write_text(card_text)
        label = "damaged weights"
    elif rnd.random() < 0.15:
        weights.with_suffix(".json").write_bytes(_damaged_bytes(card_text.encode(), rnd))
        label = "damaged card bytes"
    else:
        card = json.loads(card_text)
        label = _edit_card(card, CLASSIFIER_EDITS if classifier else CARD_EDITS, rnd)
        weights.with_suffix(".json").write_text(json.dumps(card))
    logs = ["--log-dir", str(work / "logs")]
    if classifier:
        return Case("classifier", label, logs + ["classifier", "evaluate", "--model",
                                                 str(weights), "--data", str(base["neu"])])
    rec = work / f"rec-model{i}.h5"
    shutil.copy(base["recording"], rec)
    return Case("model", label, logs + ["infer", str(rec), "--model", str(weights),
                                        "--device", "cpu"])


FAMILIES = {"config": config_case, "recording": recording_case, "model": model_case}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=200, help="cases in all (default 200)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout-s", type=float, default=120.0, help="per case (default 120)")
    ap.add_argument("--memory-gb", type=float, default=6.0,
                    help="RLIMIT_DATA per case (default 6 GB)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--json", type=Path, help="write every outcome here")
    args = ap.parse_args()

    rnd = random.Random(args.seed)
    with tempfile.TemporaryDirectory(prefix="fuzz-cli-") as tmp:
        work = Path(tmp)
        base = make_base(work)
        names = sorted(FAMILIES)
        cases = [FAMILIES[names[i % len(names)]](i, rnd, base, work) for i in range(args.runs)]
        t0 = time.perf_counter()
        with ThreadPoolExecutor(args.workers) as pool:
            outcomes = list(pool.map(lambda c: run_case(c, args.timeout_s,
                                                        int(args.memory_gb * 2**30)), cases))
        wall = time.perf_counter() - t0
    counts = Counter((o.case.family, o.kind) for o in outcomes)
    kinds = ("handled", "traceback", "hang", "memory")
    print(f"{'family':<12}{'runs':>6}" + "".join(f"{k:>11}" for k in kinds))
    for fam in sorted({o.case.family for o in outcomes}):
        n = sum(v for (f, _), v in counts.items() if f == fam)
        print(f"{fam:<12}{n:>6}" + "".join(f"{counts[(fam, k)]:>11}" for k in kinds))
    total = Counter(o.kind for o in outcomes)
    print(f"{'all':<12}{len(outcomes):>6}" + "".join(f"{total[k]:>11}" for k in kinds))
    exits = Counter(o.rc for o in outcomes)
    print(f"exit codes: {dict(sorted(exits.items(), key=lambda kv: str(kv[0])))}; "
          f"slowest case {max(o.seconds for o in outcomes):.1f} s; largest child RSS "
          f"{max(o.max_rss_mb for o in outcomes):.0f} MB; {wall:.0f} s wall, "
          f"{args.workers} workers")
    for o in outcomes:
        if o.kind != "handled":
            print(f"  {o.kind}: [{o.case.family}] {o.case.label}\n    {o.tail}")
    if args.json:
        args.json.write_text(json.dumps([{"family": o.case.family, "label": o.case.label,
                                          "argv": o.case.argv, "kind": o.kind, "rc": o.rc,
                                          "seconds": round(o.seconds, 2), "tail": o.tail}
                                         for o in outcomes], indent=1))
    return 0 if total["handled"] == len(outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
