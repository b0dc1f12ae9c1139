"""The simulated bench: the device emulators, the state they share with the simulated camera,
and what lies under the camera (a `rig.interfaces.SampleHolder`).

`rig.rig.build_rig` starts it for `sim` ports and the `sim` camera backend; the drivers then
talk to the emulators over pseudo-terminals as they would to real controllers. Virtual samples
and calibration targets come from the simulated world (`world`), and their ground truth goes
into every recording made on the bench.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rig.sim.bench_state import BenchState
from rig.sim.grbl_emulator import GrblEmulator, GrblEmulatorConfig
from rig.sim.pty_device import PtyDevice
from rig.sim.ringlight_emulator import RingLightEmulator

if TYPE_CHECKING:
    from recordings import RoiTruth
    from rig.camera import Camera
    from rig.config import StationConfig
    from rig.interfaces import TargetKind
    from rig.layout import RoiGeometry

FAST_TIME_SCALE = 0.02  # sim.realtime = false: emulated motion and light timing at 50x speed
# the stable names udev gives USB serial adapters (/dev/serial/by-id/...), for the emulators
STAGE_BY_ID = "usb-darkfield-sim_GRBL_SIM-GRBL-0001-if00-port0"
LIGHT_BY_ID = "usb-darkfield-sim_RingLight_SIM-RL-0001-if00"


class SimulatedBench:
    """Emulators on pseudo-terminals + the virtual sample on the stage. `stop()` ends them."""

    def __init__(self, cfg: StationConfig, state: BenchState, emulators: list[PtyDevice],
                 by_id: Path | None = None):
        self.cfg = cfg
        self.by_id = by_id  # the emulators' stable port names live here
        self.state = state
        self.emulators = emulators
        self.sample: Any = None  # world.sample.Sample (or a target plate) under the camera
        self._camera: Any = None  # the simulated camera that renders `sample`
        self._loaded = 0  # virtual samples loaded so far: the next one is seed + this
        self._before_target: Any = None

    @classmethod
    def start(cls, cfg: StationConfig) -> SimulatedBench:
        scale = 1.0 if cfg.sim.realtime else FAST_TIME_SCALE
        state = BenchState()
        st = cfg.stage
        by_id = Path(tempfile.mkdtemp(prefix="darkfield-serial-by-id-"))
        grbl = GrblEmulator(GrblEmulatorConfig.for_work_limits(
            st.x_limits_mm, st.y_limits_mm, max_speed_mm_s=st.max_speed_mm_s,
            acceleration_mm_s2=st.acceleration_mm_s2, time_scale=scale), bench=state,
            alias=str(by_id / STAGE_BY_ID))
        light = RingLightEmulator(state, time_scale=scale, alias=str(by_id / LIGHT_BY_ID))
        bench = cls(cfg, state, [grbl, light], by_id)
        try:
            grbl.start()
            light.start()
        except BaseException:
            bench.stop()
            raise
        return bench

    @property
    def stage_port(self) -> str:
        return self.emulators[0].port

    @property
    def light_port(self) -> str:
        return self.emulators[1].port

    def attach_camera(self, camera: Camera) -> None:
        """The simulated camera that renders what this bench puts under it."""
        self._camera = camera

    def stop(self) -> None:
        for emulator in self.emulators:
            emulator.stop()
        if self.by_id is not None:
            shutil.rmtree(self.by_id, ignore_errors=True)

    # -- rig.interfaces.SampleHolder -----------------------------------------------------------
    def load_sample(self, sample_id: str) -> None:
        """The next virtual glass of the seed series `[sim] seed`, `seed + 1`, ..."""
        self.load_virtual_sample(self.cfg.sim.seed + self._loaded)

    def load_virtual_sample(self, seed: int) -> Any:
        """Put the virtual glass drawn from `seed` on the stage (a resumed sample names its own)."""
        from world.sample import DefectMix, make_sample

        s = self.cfg.sample
        sample = make_sample(seed, DefectMix(scratch_fraction=self.cfg.sim.scratch_fraction),
                             width_mm=s.width_mm, length_mm=s.length_mm,
                             corner_radius_mm=s.corner_radius_mm)
        self._loaded += 1
        self._put(sample)
        return sample

    def place_target(self, kind: TargetKind, field_mm: tuple[float, float],
                     pixel_size_mm: float, seed: int) -> tuple[float, float]:
        from world.targets import diffuser_plate, fiducial_plate, plate_centre_mm

        if self._before_target is None:
            self._before_target = (self.sample,)
        plate = diffuser_plate() if kind == "diffuser" else fiducial_plate(
            field_mm, seed=seed, pixel_size_mm=pixel_size_mm)
        self._put(plate)
        cx, cy = plate_centre_mm(plate)
        ox, oy = self.cfg.stage.sample_origin_mm
        return ox + cx, oy + cy

    def remove_target(self) -> None:
        if self._before_target is not None:
            self._put(self._before_target[0])
            self._before_target = None

    def truth(self, roi: RoiGeometry) -> RoiTruth | None:
        if self.sample is None:
            return None
        from world.optics import roi_truth

        return roi_truth(self.sample, roi.origin_px, (roi.size_px[1], roi.size_px[0]),
                         roi.pixel_size_mm, None)

    def _put(self, sample: Any) -> None:
        self.sample = sample
        if self._camera is not None:
            self._camera.set_sample(sample)
