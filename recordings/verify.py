"""Integrity check: structure, attributes and the per-RoI checksum of the raw data."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from recordings import schema
from recordings.errors import RecordingError
from recordings.reader import Recording

REQUIRED_ROI_ATTRS = ("bayer_pattern", "bit_depth", "azimuths_deg", "stage_xy_mm", "origin_px",
                      "pixel_size_mm", "exposure_us", "timestamps_s", "frame_ids")


@dataclass
class VerifyReport:
    path: Path
    status: str = ""
    rois_ok: list[int] = field(default_factory=list)
    missing_rois: list[int] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        if not self.ok:
            return f"FAILED  {self.path}: " + "; ".join(self.problems)
        extra = f", missing RoIs {self.missing_rois}" if self.missing_rois else ""
        return f"OK      {self.path}: {self.status}, {len(self.rois_ok)} RoIs verified{extra}"


def verify_recording(path: str | Path) -> VerifyReport:
    report = VerifyReport(Path(path))
    try:
        rec = Recording(path)
    except RecordingError as exc:
        report.problems.append(str(exc))
        return report
    with rec:
        report.status = rec.status
        try:
            _ = rec.rig_config  # resume and infer rebuild the station from it
        except RecordingError as exc:
            report.problems.append(str(exc).removeprefix(f"{rec.path}: "))
        report.missing_rois = rec.missing_rois()
        unexpected = rec.unexpected_rois()
        if unexpected:
            report.problems.append(f"/rois has groups {unexpected} that are not among the "
                                   f"{rec.n_rois} planned RoIs (edited or damaged file)")
        if rec.status == schema.STATUS_COMPLETE and report.missing_rois:
            report.problems.append(f"marked complete but RoIs {report.missing_rois} are missing")
        if rec.has_results:  # the detector's conclusions must be readable whole
            try:
                res = rec.results()
                assert res is not None
                for m in res.probability_maps.values():
                    m[()]
            except RecordingError as exc:
                report.problems.append(str(exc).removeprefix(f"{rec.path}: "))
            except (KeyError, OSError, ValueError, TypeError, AssertionError) as exc:
                report.problems.append(f"/results is damaged ({exc!r}); run `main.py infer` "
                                       "on the file to write them again")
        for roi in rec.rois():
            missing = [a for a in REQUIRED_ROI_ATTRS if a not in roi.group.attrs]
            if missing:
                report.problems.append(f"RoI {roi.index}: missing attributes {missing}")
                continue
            try:
                roi.verified_raw()
            except RecordingError as exc:
                report.problems.append(str(exc))
            else:
                report.rois_ok.append(roi.index)
    return report
