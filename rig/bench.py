"""The rig: stage, ring light and camera composed behind the few calls a scan needs.

`build_rig(cfg)` builds it from a station config. For the simulated bench (`port = "sim"`,
`camera.backend = "sim"`) it first starts the GRBL and ring-light emulators on pseudo-terminals
and the rendered camera on one shared bench state; the drivers then open the emulators' device
paths exactly as they would open USB serial adapters. That is the only difference between the
bench and the factory.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from recordings import RoiTruth
from rig.camera import Camera, DroppedFrame, Frame, open_camera
from rig.config import StationConfig
from rig.grbl import GrblSettings, GrblStage
from rig.layout import RoiGeometry, roi_layout
from rig.ringlight import RingLight, RingLightSettings
from rig.stage import Stage

log = logging.getLogger(__name__)

SIM_PORT = "sim"
FAST_TIME_SCALE = 0.02  # sim.realtime = false: emulated motion and light timing at 50x speed


@dataclass
class SimBench:
    """The simulated bench's parts the rig needs beyond its drivers."""

    state: Any  # rig.sim.bench_state.BenchState
    emulators: list[Any] = field(default_factory=list)  # PtyDevice instances
    renderer_config: Any = None
    sample: Any = None  # rig.sim.sample.Sample on the stage

    def stop(self) -> None:
        for emulator in self.emulators:
            emulator.stop()


class Rig:
    """Stage + ring light + camera. Use as a context manager; `close()` makes everything safe."""

    def __init__(self, cfg: StationConfig, stage: Stage, light: RingLight, camera: Camera,
                 sim: SimBench | None = None, acquire_retries: int = 1):
        self.cfg = cfg
        self.stage = stage
        self.light = light
        self.camera = camera
        self.sim = sim
        self.acquire_retries = acquire_retries
        self.calibration_id = ""  # set by calibration.apply_to_rig
        self.layout: tuple[RoiGeometry, ...] = roi_layout(cfg)  # calibrated by apply_to_rig

    def __enter__(self) -> Rig:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for step in (self.make_safe, self.camera.close, self.light.close, self.stage.close):
            try:
                step()
            except Exception as exc:  # closing must reach every device
                log.warning("closing the rig: %s", exc)
        if self.sim is not None:
            self.sim.stop()

    # -- what the scan runner calls ------------------------------------------------------------
    def move_to(self, xy_mm: tuple[float, float], timeout_s: float | None = None) -> None:
        self.stage.move_to(xy_mm[0], xy_mm[1], timeout=timeout_s)

    def acquire_stack(self, states: Sequence[int], exposure_us: float, trigger: str,
                      frame_timeout_s: float, on_frame: Callable[[Frame], None] | None = None
                      ) -> list[Frame]:
        """One frame per illumination state, in order. A dropped frame re-acquires the whole
        stack (up to `acquire_retries` times); it is never patched with another frame."""
        for attempt in range(self.acquire_retries + 1):
            try:
                return self._acquire_once(states, exposure_us, trigger, frame_timeout_s, on_frame)
            except DroppedFrame as exc:
                if attempt == self.acquire_retries:
                    raise
                log.warning("dropped frame (%s); re-acquiring the stack", exc)
            finally:
                with contextlib.suppress(Exception):
                    self.light.all_off()
        raise AssertionError("unreachable")

    def _acquire_once(self, states: Sequence[int], exposure_us: float, trigger: str,
                      frame_timeout_s: float, on_frame: Callable[[Frame], None] | None
                      ) -> list[Frame]:
        if self.camera.settings.exposure_us != exposure_us:
            self.camera.configure(exposure_us=exposure_us)
        self.camera.arm(list(states))
        frames = []
        try:
            if trigger == "hardware":  # the ring light fires the camera's Line1 at each step
                self.light.arm(list(states))
                for _ in states:
                    self.light.trigger()
                    frames.append(self.camera.grab(frame_timeout_s))
                    if on_frame:
                        on_frame(frames[-1])
            else:
                for state in states:
                    self.light.select_state(state)
                    self.camera.trigger()
                    frames.append(self.camera.grab(frame_timeout_s))
                    if on_frame:
                        on_frame(frames[-1])
        finally:
            self.camera.disarm()
        return frames

    def make_safe(self) -> None:
        """Lights off and stage stopped; called on abort or error. Never raises."""
        for what, step in (("lights off", self.light.all_off), ("stage stop", self.stage.stop)):
            try:
                step()
            except Exception as exc:
                log.warning("make_safe: %s failed: %s", what, exc)

    # -- simulated bench only ----------------------------------------------------------------
    def load_virtual_sample(self, seed: int) -> Any:
        """Put a new virtual glass (drawn from `seed`) on the simulated stage."""
        if self.sim is None:
            raise RuntimeError("load_virtual_sample() needs the simulated bench")
        from rig.sim.sample import DefectMix, make_sample

        s = self.cfg.sample
        sample = make_sample(seed, DefectMix(scratch_fraction=self.cfg.sim.scratch_fraction),
                             width_mm=s.width_mm, length_mm=s.length_mm,
                             corner_radius_mm=s.corner_radius_mm)
        self.sim.sample = sample
        self.camera.set_sample(sample)
        return sample

    def truth(self, roi: RoiGeometry) -> RoiTruth | None:
        """Ground truth of an RoI on the simulated bench; None on a real station."""
        if self.sim is None or self.sim.sample is None:
            return None
        from rig.sim.optics import roi_truth

        return roi_truth(self.sim.sample, roi.origin_px, (roi.size_px[1], roi.size_px[0]),
                         roi.pixel_size_mm, self.sim.renderer_config)


def build_rig(cfg: StationConfig) -> Rig:
    """Open every device of the station (starting emulators for `sim` ports and camera)."""
    sim: SimBench | None = None
    stage_port, light_port = cfg.stage.port, cfg.light.port
    if SIM_PORT in (stage_port, light_port) or cfg.camera.backend == "sim":
        sim = _start_sim_bench(cfg)
        stage_port = sim.emulators[0].port if stage_port == SIM_PORT else stage_port
        light_port = sim.emulators[1].port if light_port == SIM_PORT else light_port
    opened: list[Any] = []
    try:
        fast = {"poll_interval_s": 0.02} if sim and not cfg.sim.realtime else {}
        stage = GrblStage(GrblSettings.from_config(cfg.stage, port=stage_port, **fast))
        stage.open()
        opened.append(stage)
        hold_us = int(cfg.camera.exposure_us) + 2000  # LEDs stay lit through the exposure
        light = RingLight(RingLightSettings.from_config(cfg.light, port=light_port,
                                                        hold_us=hold_us))
        light.open()
        opened.append(light)
        options = {}
        if cfg.camera.backend == "sim":
            from rig.cameras.sim import sim_options

            options = sim_options(cfg, bench=sim.state if sim else None)
        camera = open_camera(cfg.camera, **options)
    except BaseException:
        for device in reversed(opened):
            with contextlib.suppress(Exception):
                device.close()
        if sim is not None:
            sim.stop()
        raise
    return Rig(cfg, stage, light, camera, sim)


def _start_sim_bench(cfg: StationConfig) -> SimBench:
    from rig.sim.bench_state import BenchState
    from rig.sim.grbl_emulator import GrblEmulator, GrblEmulatorConfig
    from rig.sim.ringlight_emulator import RingLightEmulator

    scale = 1.0 if cfg.sim.realtime else FAST_TIME_SCALE
    state = BenchState()
    st = cfg.stage
    grbl = GrblEmulator(GrblEmulatorConfig.for_work_limits(
        st.x_limits_mm, st.y_limits_mm, max_speed_mm_s=st.max_speed_mm_s,
        acceleration_mm_s2=st.acceleration_mm_s2, time_scale=scale), bench=state)
    light = RingLightEmulator(state, time_scale=scale)
    bench = SimBench(state, [grbl, light])
    try:
        grbl.start()
        light.start()
    except BaseException:
        bench.stop()
        raise
    return bench
