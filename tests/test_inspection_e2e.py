"""A full simulated inspection with the bundled detector: the verdict matches the truth."""

from __future__ import annotations

from pathlib import Path

import pytest

import recordings as R
from inference.detector import Detector
from inspection import InspectionRun
from rig.rig import build_rig
from tests.conftest import fast_sim_config


@pytest.fixture(scope="module")
def detector() -> Detector:
    return Detector.from_settings(fast_sim_config().detector)


@pytest.mark.parametrize("seed,expected", [
    (46, "FAIL"),  # a bright scratch (~785 DN) crosses the fields of view
    (3, "PASS"),   # dust and stains only in view
])
def test_simulated_inspection_verdict_matches_truth(tmp_path: Path, detector: Detector,
                                                    seed: int, expected: str) -> None:
    cfg = fast_sim_config(size=1024)
    with build_rig(cfg) as rig:
        rig.samples.load_virtual_sample(seed)
        result = InspectionRun(cfg, rig, detector, tmp_path, f"E2E-{seed}").run()
    with R.open_recording(result.recording) as rec:
        truth_scratched = any(roi.scratch_mask().any() for roi in rec.rois())
        stored = rec.results()
    assert truth_scratched == (expected == "FAIL")
    assert result.verdict == expected == stored.verdict
    assert R.verify_recording(result.recording).ok
    if expected == "FAIL":  # the scratch is found where the truth has it
        with R.open_recording(result.recording) as rec:
            hits = [s for s in stored.scratches
                    if rec.roi(s.roi).scratch_mask()[s.box_px[0]:s.box_px[2],
                                                     s.box_px[1]:s.box_px[3]].any()]
        assert hits and all(s.type for s in stored.scratches)
