"""`recordings ls | show | verify | export`: look into recordings without writing code."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from recordings.errors import RecordingError
from recordings.reader import Recording, damage_reported
from recordings.verify import verify_recording


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("recordings", help="list, show, verify and export recordings",
                              description="Inspect recordings (HDF5, docs/recording-format.md).")
    sub = p.add_subparsers(dest="recordings_command", required=True, metavar="ACTION")
    ls = sub.add_parser("ls", help="one line per recording in a folder")
    ls.add_argument("folder", type=Path)
    ls.set_defaults(func=_ls)
    show = sub.add_parser("show", help="attributes, RoIs, truth and results of one recording")
    show.add_argument("file", type=Path)
    show.add_argument("--json", action="store_true", help="machine-readable output")
    show.set_defaults(func=_show)
    ver = sub.add_parser("verify", help="check structure and per-RoI checksums (exit 1 on failure)")
    ver.add_argument("files", type=Path, nargs="+")
    ver.set_defaults(func=_verify)
    exp = sub.add_parser("export", help="contact sheet PNG of one RoI's 6 states and their maximum")
    exp.add_argument("file", type=Path)
    exp.add_argument("--roi", type=int, required=True)
    exp.add_argument("--png", type=Path, required=True, help="output PNG")
    exp.set_defaults(func=_export)


def _ls(args: argparse.Namespace) -> int:
    files = sorted(args.folder.glob("*.h5"))
    if not files:
        print(f"no recordings (*.h5) in {args.folder}")
        return 0
    print(f"{'sample':<24} {'status':<11} {'RoIs':>6} {'verdict':<8} {'scratches':>9}  file")
    for f in files:
        try:
            with Recording(f) as rec:
                res = rec.results()
                verdict = res.verdict if res else "-"
                n = str(len(res.scratches)) if res else "-"
                rois = f"{len(rec.roi_ids())}/{rec.n_rois}"
                print(f"{rec.sample_id:<24} {rec.status:<11} {rois:>6} {verdict:<8} {n:>9}  {f.name}")
        except RecordingError as exc:
            print(f"{'?':<24} {'unreadable':<11} {'':>6} {'':<8} {'':>9}  {f.name}: {exc}")
    return 0


def describe(rec: Recording) -> dict:
    """Everything `show` prints, as plain JSON types."""
    attrs = {k: v for k, v in rec.attrs.items() if k != "rig_config"}
    rois = []
    for roi in rec.rois():
        a = roi.attrs
        entry = {"roi": roi.index, "shape": list(roi.shape), "origin_px": a["origin_px"],
                 "stage_xy_mm": a["stage_xy_mm"], "exposure_us": a["exposure_us"],
                 "frame_ids": a["frame_ids"]}
        if roi.has_truth:
            kinds: dict[str, int] = {}
            for d in roi.defects():
                kinds[d["kind"]] = kinds.get(d["kind"], 0) + 1
            mask = roi.scratch_mask()
            entry["truth"] = {"scratch_pixels": 0 if mask is None else int(mask.sum()),
                              "defects": kinds}
        rois.append(entry)
    out = {"file": str(rec.path), "attributes": {k: str(v) for k, v in attrs.items()},
           "rois": rois, "missing_rois": [i for i in range(rec.n_rois) if i not in rec.roi_ids()]}
    res = rec.results()
    if res:
        out["results"] = {"detector": res.detector, "model_sha256": res.model_sha256,
                          "verdict": res.verdict, "timings_s": res.timings_s,
                          "scratches": [o.to_json() for o in res.scratches],
                          "contaminants": [o.to_json() for o in res.contaminants]}
    return out


def _show(args: argparse.Namespace) -> int:
    with Recording(args.file) as rec, damage_reported(args.file):
        info = describe(rec)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    a = info["attributes"]
    print(f"{info['file']}\n  sample {a['sample_id']}  status {a['status']}  format "
          f"{a['format_version']}  created {a['created']}  software {a['software_version']}"
          f"  calibration {a.get('calibration_id') or '-'}")
    print(f"  RoIs recorded: {len(info['rois'])}/{a['n_rois']}"
          + (f" (missing {info['missing_rois']})" if info["missing_rois"] else ""))
    for r in info["rois"]:
        truth = ""
        if "truth" in r:
            t = r["truth"]
            truth = f"  truth: {t['defects'] or 'clean'}, {t['scratch_pixels']} scratch px"
        print(f"   RoI {r['roi']:02d} {r['shape'][1]}x{r['shape'][2]} origin {r['origin_px']}"
              f" stage {[round(v, 2) for v in r['stage_xy_mm']]} mm{truth}")
    res = info.get("results")
    if res:
        print(f"  results: {res['verdict']}  detector {res['detector']} "
              f"(sha256 {res['model_sha256'][:12]})  timings {res['timings_s']}")
        for title in ("scratches", "contaminants"):
            print(f"   {title}: {len(res[title])}")
            for o in res[title]:
                typed = f"  type {o['type']} ({o['type_score']})" if o["type"] else ""
                print(f"     RoI {o['roi']:02d} at ({o['x_mm']:.2f}, {o['y_mm']:.2f}) mm  length "
                      f"{o['length_mm']:.2f} mm  score {o['score']:.2f}{typed}")
    else:
        print("  results: none (run `main.py infer` on it)")
    return 0


def _verify(args: argparse.Namespace) -> int:
    failed = 0
    for f in args.files:
        report = verify_recording(f)
        print(report.summary())
        failed += not report.ok
    return 1 if failed else 0


def _export(args: argparse.Namespace) -> int:
    from recordings.contact_sheet import save_contact_sheet

    with Recording(args.file) as rec, damage_reported(args.file):
        roi = rec.roi(args.roi)
        save_contact_sheet(roi.raw[()], args.png, black_level=64,
                           title=f"{rec.sample_id}  RoI {args.roi:02d}",
                           azimuths_deg=roi.attrs["azimuths_deg"])
    print(f"wrote {args.png}")
    return 0
