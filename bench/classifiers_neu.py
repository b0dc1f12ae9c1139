"""NEU small-data experiments for the second-stage classifiers (docs/classifiers.md).

Protocol of seed 002 Table III: K = 10, 20, 50 random images per class for training, every other
image of the class for testing, accuracy averaged over several seeds; run for method 002 and the
plain cross-entropy baseline. All four methods (plus two controls) at K = 20. Seed 002 Table IV
few-shot check: train 002 on patches / inclusion / rolled-in_scale, register crazing / scratches /
pitted_surface from k = 1, 3, 5 examples, classify the rest of those three classes.

Results go to a JSON-lines file, one line per run; finished runs are skipped on restart, and
``--shard i/n`` splits the runs between processes. ``--summary`` prints the markdown tables.

    nohup .venv/bin/python bench/classifiers_neu.py --shard 0/2 > /tmp/cls_neu_0.log 2>&1 &
    nohup .venv/bin/python bench/classifiers_neu.py --shard 1/2 > /tmp/cls_neu_1.log 2>&1 &
    .venv/bin/python bench/classifiers_neu.py --timing   # CPU s / epoch, short runs
    .venv/bin/python bench/classifiers_neu.py --summary
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

from inference.classifiers import make_classifier
from inference.classifiers.data import DEFAULT_NEU, load_neu, split_per_class
from inference.classifiers.metrics import classification_report

PAPER_TABLE3 = {10: (93.89, 98.39), 20: (97.72, 98.83), 50: (99.06, 99.72)}  # (ResNet-50, 002)
PAPER_TABLE4 = {1: 82.16, 3: 84.53, 5: 86.29}
PAPER_K20 = {
    "ce": "97.72 (NEU, K=20, ResNet-50; seed 002 Table III)",
    "002": "98.83 (NEU, K=20, ResNet-50; seed 002 Table III)",
    "000": "97.7 acc. (own multi-label mobile-screen set, ResNet-50; seed 000 Table 2)",
    "001": "93 test acc. (own binary screen set, VGG16; seed 001 Table 2)",
    "003": "98.53 / 97.50 / 100 acc. (binary KolektorSDD / KSDD2 / DAGM; seed 003 Table 3)",
}
FEWSHOT_BASE = ("patches", "inclusion", "rolled-in_scale")
FEWSHOT_NEW = ("crazing", "scratches", "pitted_surface")

# name -> (method, overrides, note)
VARIANTS: dict[str, tuple[str, dict[str, Any], str]] = {
    "ce": ("ce", {}, "cross-entropy baseline, resnet-tiny"),
    "002": ("002", {}, "self-contrastive + ArcFace, prototype database, resnet-tiny"),
    "000": ("000", {}, "graph two-stage (FC2 + GR), resnet-tiny, lr 0.01"),
    "001": ("001", {}, "Siamese CE + contrastive, vgg-tiny"),
    "003": ("003", {}, "PSIC-Net width 0.25, box masks"),
    "ce-vgg": ("ce", {"backbone": "vgg-tiny"}, "control: cross-entropy on 001's vgg-tiny"),
    "000-paper-lr": ("000", {"lr": 1e-3}, "control: 000 with the paper's lr 1e-3"),
    "002-vgg": ("002", {"backbone": "vgg-tiny"}, "control: 002 on 001's vgg-tiny"),
}


def plan(seeds: list[int], k50_seeds: list[int], method_seeds: list[int],
         controls: list[str], control_seeds: list[int]) -> list[dict[str, Any]]:
    """The run list. Seed counts are separate knobs because the 2-core machine is shared:
    K = 50 runs and the slow methods (001, 003) get fewer seeds by default."""
    runs = []
    for k in (10, 20, 50):
        for s in (k50_seeds if k == 50 else seeds):
            runs += [{"kind": "table3", "variant": v, "k": k, "seed": s} for v in ("002", "ce")]
    runs += [{"kind": "k20", "variant": "000", "k": 20, "seed": s} for s in seeds]
    for v in ("001", "003"):
        runs += [{"kind": "k20", "variant": v, "k": 20, "seed": s} for s in method_seeds]
    for v in controls:
        runs += [{"kind": "k20", "variant": v, "k": 20, "seed": s} for s in control_seeds]
    runs.append({"kind": "fewshot", "variant": "002", "k": 0, "seed": 0})
    return runs


# rough single-thread training seconds at 64 px (K = 20 runs measured alone on this CPU)
COST = {"ce": 25, "002": 72, "000": 30, "001": 110, "003": 90, "ce-vgg": 45, "002-vgg": 140,
        "000-paper-lr": 35}


def estimated_cost(r: dict[str, Any]) -> float:
    if r["kind"] == "fewshot":
        return 150.0
    return COST[r["variant"]] * r["k"] / 20


def shard(runs: list[dict[str, Any]], i: int, n: int) -> list[dict[str, Any]]:
    """Longest-processing-time-first assignment of runs to n shards; returns shard i."""
    loads = [0.0] * n
    parts: list[list[dict[str, Any]]] = [[] for _ in range(n)]
    for r in sorted(runs, key=estimated_cost, reverse=True):
        j = loads.index(min(loads))
        parts[j].append(r)
        loads[j] += estimated_cost(r)
    return parts[i]


def run_key(r: dict[str, Any]) -> str:
    return f"{r['kind']}/{r['variant']}/k{r['k']}/s{r['seed']}"


def run_one(r: dict[str, Any], data, size: int, fewshot_epochs: int) -> dict[str, Any]:
    method, over, note = VARIANTS[r["variant"]]
    over = {**over, "input_size": size, "seed": r["seed"]}
    if r["kind"] == "fewshot":
        return run_fewshot(data, over, fewshot_epochs)
    tr, te = split_per_class(data.labels, r["k"], r["seed"])
    a, b = data.subset(tr), data.subset(te)
    clf = make_classifier(method, **over)
    clf.fit(a.images, a.labels, a.masks)
    t0 = time.perf_counter()
    pred = clf.predict(b.images)
    pred_s = time.perf_counter() - t0
    rep = classification_report(b.labels, pred, clf.classes)
    return {**r, "method": method, "note": note, "accuracy": rep["accuracy"],
            "recall": {c: v["recall"] for c, v in rep["per_class"].items()},
            "confusion": rep["confusion"], "classes": rep["classes"],
            "n_train": len(a.labels), "n_test": len(b.labels),
            "train_s": clf.info["train_seconds"], "predict_s": pred_s,
            "config": clf.card()["config"]}


def run_fewshot(data, over: dict[str, Any], epochs: int) -> dict[str, Any]:
    lab = np.asarray(data.labels)
    base = np.flatnonzero(np.isin(lab, FEWSHOT_BASE))
    clf = make_classifier("002", **{**over, "epochs": epochs})
    clf.fit(data.images[base], lab[base].tolist())
    new = np.flatnonzero(np.isin(lab, FEWSHOT_NEW))
    out: dict[str, Any] = {}
    rng = np.random.default_rng(over["seed"])
    for k in (1, 3, 5):
        accs = []
        for _ in range(10):  # 10 random draws of the k shots
            shots = np.concatenate([rng.choice(np.flatnonzero(lab == c), k, replace=False)
                                    for c in FEWSHOT_NEW])
            test = np.setdiff1d(new, shots)
            clf.set_database(data.images[shots], lab[shots].tolist())
            pred = clf.predict(data.images[test])
            accs.append(float(np.mean(np.array(pred) == lab[test])))
        out[str(k)] = {"mean": float(np.mean(accs)), "std": float(np.std(accs)), "draws": accs}
    return {"kind": "fewshot", "variant": "002", "k": 0, "seed": over["seed"],
            "method": "002", "epochs": epochs, "n_train": int(len(base)),
            "train_s": clf.info["train_seconds"], "fewshot": out,
            "config": clf.card()["config"]}


def load_results(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _ms(xs: list[float]) -> str:
    a = 100 * np.asarray(xs)
    return f"{a.mean():.2f} ± {a.std():.2f}" if len(a) > 1 else f"{a.mean():.2f}"


def _common(groups: list[list[dict[str, Any]]]) -> list[list[dict[str, Any]]]:
    """Restrict each group to the seeds present in all groups (paired comparison)."""
    seeds = set.intersection(*({x["seed"] for x in g} for g in groups))
    return [sorted((x for x in g if x["seed"] in seeds), key=lambda x: x["seed"])
            for g in groups]


def summary(results: list[dict[str, Any]], timing: list[dict[str, Any]]) -> str:
    by: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    for r in results:
        by.setdefault((r["kind"], r["variant"], r["k"]), []).append(r)
    lines = ["### Seed 002 Table III protocol (NEU, K per class, test on the rest)", "",
             "Mean ± std over the split/training seeds run for *both* methods (paired).", "",
             "| K | seeds | CE baseline (ours) | 002 (ours) | 002 - CE, paired | "
             "CE paper (ResNet-50) | 002 paper (ResNet-50) |",
             "|---|---|---|---|---|---|---|"]
    for k in (10, 20, 50):
        ce, m2 = by.get(("table3", "ce", k), []), by.get(("table3", "002", k), [])
        if not ce or not m2:
            continue
        ce, m2 = _common([ce, m2])
        if not ce:
            continue
        diff = [b["accuracy"] - a["accuracy"] for a, b in zip(ce, m2, strict=True)]
        pc, p2 = PAPER_TABLE3[k]
        lines.append(f"| {k} | {','.join(str(x['seed']) for x in ce)} | "
                     f"{_ms([x['accuracy'] for x in ce])} | {_ms([x['accuracy'] for x in m2])} | "
                     f"{_ms(diff)} | {pc:.2f} | {p2:.2f} |")
    lines += ["", "### All methods at K = 20 (NEU, 120 training images, 1080 test images)", "",
              "| run | what | accuracy % (ours) | seeds | paper's figure |",
              "|---|---|---|---|---|"]
    rows = [("ce", ("table3", "ce", 20)), ("002", ("table3", "002", 20)),
            ("000", ("k20", "000", 20)), ("001", ("k20", "001", 20)),
            ("003", ("k20", "003", 20)), ("ce-vgg", ("k20", "ce-vgg", 20)),
            ("002-vgg", ("k20", "002-vgg", 20)),
            ("000-paper-lr", ("k20", "000-paper-lr", 20))]
    for name, key in rows:
        g = sorted(by.get(key, []), key=lambda x: x["seed"])
        if not g:
            continue
        lines.append(f"| {name} | {VARIANTS[name][2]} | {_ms([x['accuracy'] for x in g])} | "
                     f"{','.join(str(x['seed']) for x in g)} | {PAPER_K20.get(name, '-')} |")
    lines += ["", "Per-class recall at K = 20 (mean over the seeds above):", ""]
    cls = None
    for name, key in rows:
        g = by.get(key, [])
        if not g:
            continue
        if cls is None:
            cls = g[0]["classes"]
            lines += ["| run | " + " | ".join(cls) + " |", "|---" * (len(cls) + 1) + "|"]
        rec = [np.mean([x["recall"][c] for x in g]) for c in cls]
        lines.append(f"| {name} | " + " | ".join(f"{100 * v:.1f}" for v in rec) + " |")
    fs = by.get(("fewshot", "002", 0), [])
    if fs:
        r = fs[0]
        lines += ["", f"### Few-shot (seed 002 Table IV protocol; 002 trained {r['epochs']} "
                      f"epochs on {r['n_train']} images of 3 classes)", "",
                  "| k | accuracy % (ours, 10 draws of the shots) | paper |", "|---|---|---|"]
        for k in ("1", "3", "5"):
            f = r["fewshot"][k]
            lines.append(f"| {k} | {100 * f['mean']:.2f} ± {100 * f['std']:.2f} | "
                         f"{PAPER_TABLE4[int(k)]:.2f} |")
    if timing:
        lines += ["", "### CPU time (one thread; process CPU seconds, so other users' load "
                      "does not count)", "",
                  "| run | CPU s / epoch at K = 20 | epochs | CPU s per K = 20 training | "
                  "CPU ms per crop, predict |", "|---|---|---|---|---|"]
        for t in timing:
            lines.append(f"| {t['variant']} | {t['cpu_s_per_epoch']:.2f} | {t['epochs_full']} | "
                         f"{t['cpu_s_full']:.0f} | {t['predict_cpu_ms_per_crop']:.2f} |")
    return "\n".join(lines)


def timing_run(data, size: int, variants: list[str], epochs: int) -> list[dict[str, Any]]:
    """CPU seconds per epoch (K = 20, seed 0), extrapolated to the full epoch count."""
    tr, te = split_per_class(data.labels, 20, 0)
    a, b = data.subset(tr), data.subset(te)
    out = []
    make_classifier("ce", input_size=size, epochs=1).fit(a.images, a.labels)  # warm-up
    for v in variants:
        method, over, _ = VARIANTS[v]
        full = make_classifier(method, **over).config
        short = {**over, "input_size": size, "epochs": epochs}
        phases = 1
        if method == "003":
            short["cls_epochs"] = epochs
            phases = 2
        if method == "000":
            phases = 2
        clf = make_classifier(method, **short)
        clf.fit(a.images, a.labels, a.masks)
        per_epoch = clf.info["train_cpu_seconds"] / (epochs * phases)
        c0 = time.process_time()
        clf.predict_proba(b.images[:200])
        pred_ms = 1000 * (time.process_time() - c0) / 200
        out.append({"variant": v, "cpu_s_per_epoch": per_epoch * phases,
                    "epochs_full": full.epochs, "cpu_s_full": per_epoch * phases * full.epochs,
                    "predict_cpu_ms_per_crop": pred_ms})
        print(out[-1], flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(DEFAULT_NEU))
    ap.add_argument("--size", type=int, default=64, help="input size in pixels")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2],
                    help="seeds for K = 10 and 20 (002, CE) and for 000")
    ap.add_argument("--k50-seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--method-seeds", type=int, nargs="+", default=[0, 1],
                    help="seeds for 001 and 003 at K = 20")
    ap.add_argument("--controls", nargs="*", default=["000-paper-lr"],
                    choices=["ce-vgg", "002-vgg", "000-paper-lr"])
    ap.add_argument("--control-seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--fewshot-epochs", type=int, default=15)
    ap.add_argument("--results", default="/tmp/classifiers_neu.jsonl")
    ap.add_argument("--shard", default="0/1", help="i/n: run every n-th run starting at i")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--only", nargs="*", default=None, help="restrict to these variants")
    ap.add_argument("--summary", action="store_true", help="print tables and exit")
    ap.add_argument("--timing", action="store_true",
                    help="measure CPU s / epoch of each variant (short runs) and exit")
    ap.add_argument("--timing-results", default="/tmp/classifiers_neu_timing.json")
    args = ap.parse_args(argv)
    res_path = Path(args.results)
    timing_path = Path(args.timing_results)
    if args.summary:
        timing = json.loads(timing_path.read_text()) if timing_path.exists() else []
        print(summary(load_results(res_path), timing))
        return 0
    import torch

    torch.set_num_threads(args.threads)
    if args.timing:
        data = load_neu(args.data, args.size)
        t = timing_run(data, args.size, ["ce", "002", "000", "001", "003"], 10)
        timing_path.write_text(json.dumps(t, indent=1) + "\n")
        return 0
    i, n = (int(v) for v in args.shard.split("/"))
    runs = plan(args.seeds, args.k50_seeds, args.method_seeds, args.controls,
                args.control_seeds)
    if args.only:
        runs = [r for r in runs if r["variant"] in args.only]
    done = {run_key(r) for r in load_results(res_path)}
    runs = shard([r for r in runs if run_key(r) not in done], i, n)
    t0 = time.perf_counter()
    data = load_neu(args.data, args.size)
    print(f"loaded {len(data.labels)} images at {args.size} px in "
          f"{time.perf_counter() - t0:.1f} s; {len(runs)} runs in this shard", flush=True)
    for r in runs:
        t1 = time.perf_counter()
        out = run_one(r, data, args.size, args.fewshot_epochs)
        out.update({"wall_s": time.perf_counter() - t1, "threads": args.threads,
                    "load_avg_1min": os.getloadavg()[0],
                    "cpu": platform.processor() or platform.machine()})
        with res_path.open("a") as f:
            f.write(json.dumps(out) + "\n")
        acc = out.get("accuracy")
        print(f"{run_key(r)}: acc {acc if acc is None else round(acc, 4)} "
              f"train {out['train_s']:.0f}s", flush=True)
    print(f"shard done in {time.perf_counter() - t0:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
