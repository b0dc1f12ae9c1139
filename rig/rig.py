"""The rig: stage, ring light and camera composed behind the few calls a scan needs.

`build_rig(cfg)` builds it from a station config. For the simulated bench (`port = "sim"`,
`camera.backend = "sim"`) it first starts `rig.sim.bench.SimulatedBench` (the GRBL and
ring-light emulators on pseudo-terminals, the rendered camera's bench state); the drivers then
open the emulators' device paths exactly as they would open USB serial adapters. That, and the
`SampleHolder` that puts virtual samples under the camera, is the only difference between the
simulated bench and the factory. `Rig` implements `rig.interfaces.Rig`.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from errors import ConnectionLost, DeviceError
from rig.camera import Camera, CameraError, Frame, open_camera
from rig.config import StationConfig
from rig.grbl import GrblSettings, GrblStage
from rig.interfaces import ManualLoading, RingLight, SampleHolder
from rig.layout import RoiGeometry, roi_layout
from rig.ringlight import RingLight as SerialRingLight
from rig.ringlight import RingLightError, RingLightSettings
from rig.stage import Stage, StageError

if TYPE_CHECKING:
    from rig.sim.bench import SimulatedBench

log = logging.getLogger(__name__)

SIM_PORT = "sim"
SOFTWARE_LATENCY_S = 0.005  # software trigger -> exposure start, at most (USB/GigE command)
FRAME_GUARD_S = 0.001  # between one frame's readout end and the next exposure (board-paced)
RECONNECT_FIRST_WAIT_S = 0.2  # back-off between reopen attempts: doubles up to the maximum
RECONNECT_MAX_WAIT_S = 2.0


def _sleep_until(t: float) -> None:
    delay = t - time.monotonic()
    if delay > 0:
        time.sleep(delay)


class Rig:
    """Stage + ring light + camera. Use as a context manager; `close()` makes everything safe.

    `samples` is what lies under the camera (`ManualLoading` on a real station); `on_close` are
    called last by `close()` (the simulated bench stops its emulators there).
    """

    def __init__(self, cfg: StationConfig, stage: Stage, light: RingLight, camera: Camera,
                 samples: SampleHolder | None = None,
                 on_close: Sequence[Callable[[], None]] = ()):
        self.cfg = cfg
        self.stage = stage
        self.light = light
        self.camera = camera
        self.samples: SampleHolder = samples if samples is not None else ManualLoading()
        self._on_close = list(on_close)
        self._calibration_id = ""
        self._led_levels: list[int] | None = None  # the calibration's, restored on reconnect
        self._layout: tuple[RoiGeometry, ...] = roi_layout(cfg)

    @property
    def layout(self) -> tuple[RoiGeometry, ...]:
        """The RoIs in sensor pixels: nominal, or measured by the calibration in use."""
        return self._layout

    @property
    def calibration_id(self) -> str:
        """The calibration in use ("" for none); every recording made with this rig names it."""
        return self._calibration_id

    @property
    def simulated(self) -> bool:
        return not isinstance(self.samples, ManualLoading)

    def use_calibration(self, calibration_id: str, layout: tuple[RoiGeometry, ...] | None = None,
                        led_levels: Sequence[int] | None = None) -> None:
        """Use a calibration: its LED levels (if any), its measured RoI layout (if any)."""
        if led_levels is not None:
            self._led_levels = list(led_levels)
            self.light.set_levels(self._led_levels)
        if layout is not None:
            self._layout = tuple(layout)
        self._calibration_id = calibration_id

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
        for step in self._on_close:
            try:
                step()
            except Exception as exc:
                log.warning("closing the rig: %s", exc)

    # -- what the scan runner calls ------------------------------------------------------------
    def move_to(self, xy_mm: tuple[float, float], timeout_s: float | None = None) -> None:
        self.stage.move_to(xy_mm[0], xy_mm[1], timeout=timeout_s)

    def start_move(self, xy_mm: tuple[float, float]) -> None:
        """Queue a move and return at once (`wait_moved` waits for it)."""
        self.stage.move_to(xy_mm[0], xy_mm[1], wait=False)

    def wait_moved(self, timeout_s: float | None = None) -> None:
        self.stage.wait_idle(timeout_s)

    def acquire_stack(self, states: Sequence[int], exposure_us: float, trigger: str,
                      frame_timeout_s: float, on_frame: Callable[[Frame], None] | None = None,
                      on_exposed: Callable[[], None] | None = None) -> list[Frame]:
        """One frame per illumination state, in order, with the lights off afterwards.

        `on_exposed` is called once the last frame's exposure is over and its LEDs are off,
        before that frame is read out: the scan starts the next move there. A lost or late
        frame raises (`DroppedFrame`, `FrameTimeout`); the scan runner decides on a retake,
        since only it knows where the stage is by then.
        """
        if self.camera.settings.exposure_us != exposure_us:
            self.camera.configure(exposure_us=exposure_us)
        self.camera.arm(list(states))
        frames: list[Frame] = []
        last = len(states) - 1
        try:
            if trigger == "hardware":  # the ring light fires the camera's Line1 at each step
                self.light.arm(list(states))
                # firmware 1.1+: the board paces the whole stack (one frame period apart), no
                # host round trip per frame; older firmware: one TRIG per frame
                period = exposure_us * 1e-6 + self.camera.settings.readout_s + FRAME_GUARD_S
                sequenced = self.light.can_run
                if sequenced:
                    self.light.run(period)
                for i, _ in enumerate(states):
                    if not sequenced:
                        self.light.trigger()
                    if i == last and on_exposed is not None:
                        _sleep_until(self.light.step_done_at)
                        on_exposed()
                    frames.append(self.camera.grab(frame_timeout_s + period))
                    if on_frame:
                        on_frame(frames[-1])
            else:
                for i, state in enumerate(states):
                    self.light.select_state(state)
                    self.camera.trigger()
                    if i == last and on_exposed is not None:
                        _sleep_until(time.monotonic() + exposure_us * 1e-6 + SOFTWARE_LATENCY_S)
                        self.light.all_off()
                        on_exposed()
                    frames.append(self.camera.grab(frame_timeout_s))
                    if on_frame:
                        on_frame(frames[-1])
        finally:
            self.camera.disarm()
            with contextlib.suppress(Exception):
                self.light.all_off()
        return frames

    def reconnect(self, lost: ConnectionLost, within_s: float) -> str:
        """Reopen the device `lost` came from, trying again with back-off (0.2 s doubling to
        2 s) for up to `within_s`: the camera with the settings it had, the stage homed again
        (a re-plugged board has reset and lost its position), the ring light with its levels.
        Returns the device's name; raises `ConnectionLost` if it is not back in time."""
        name, reopen = self._reopener(lost)
        deadline = time.monotonic() + within_s
        wait = RECONNECT_FIRST_WAIT_S
        tries = 0
        while True:
            tries += 1
            try:
                reopen()
                log.warning("%s reconnected after %d attempt(s) (%s)", name, tries, lost)
                return name
            except DeviceError as exc:
                if time.monotonic() + wait > deadline:
                    raise ConnectionLost(
                        f"the {name} did not come back within {within_s:g} s ({tries} "
                        f"attempt(s); last: {exc}). Check its cable and power, then resume the "
                        "sample (`scan --resume FILE`)") from exc
                log.info("%s not back yet (%s); trying again in %.1f s", name, exc, wait)
                time.sleep(wait)
                wait = min(2 * wait, RECONNECT_MAX_WAIT_S)

    def _reopener(self, lost: ConnectionLost) -> tuple[str, Callable[[], None]]:
        if isinstance(lost, CameraError):
            settings = self.camera.settings

            def camera() -> None:
                self.camera.close()
                self.camera.open()
                try:
                    self.camera.configure(settings)
                except BaseException:
                    self.camera.close()
                    raise
            return "camera", camera
        if isinstance(lost, StageError):
            def stage() -> None:
                self.stage.close()
                self.stage.open()  # homes when [stage] home_on_open (the default)
                if not self.cfg.stage.home_on_open:
                    self.stage.home()
            return "stage", stage
        if isinstance(lost, RingLightError):
            def light() -> None:
                self.light.close()
                self.light.open()
                if self._led_levels is not None:
                    self.light.set_levels(self._led_levels)
            return "ring light", light
        raise lost

    def make_safe(self) -> None:
        """Lights off and stage stopped; called on abort or error. Never raises."""
        for what, step in (("lights off", self.light.all_off), ("stage stop", self.stage.stop)):
            try:
                step()
            except Exception as exc:
                log.warning("make_safe: %s failed: %s", what, exc)


def build_rig(cfg: StationConfig) -> Rig:
    """Open every device of the station (starting the simulated bench for `sim` ports and
    camera)."""
    bench: SimulatedBench | None = None
    stage_port, light_port = cfg.stage.port, cfg.light.port
    if SIM_PORT in (stage_port, light_port) or cfg.camera.backend == "sim":
        from rig.sim.bench import SimulatedBench

        bench = SimulatedBench.start(cfg)
        stage_port = bench.stage_port if stage_port == SIM_PORT else stage_port
        light_port = bench.light_port if light_port == SIM_PORT else light_port
    opened: list[Any] = []
    try:
        fast = {"poll_interval_s": 0.02} if bench and not cfg.sim.realtime else {}
        stage = GrblStage(GrblSettings.from_config(cfg.stage, port=stage_port, **fast))
        stage.open()
        opened.append(stage)
        hold_us = int(cfg.camera.exposure_us) + 2000  # LEDs stay lit through the exposure
        light = SerialRingLight(RingLightSettings.from_config(cfg.light, port=light_port,
                                                              hold_us=hold_us))
        light.open()
        opened.append(light)
        options = {}
        if cfg.camera.backend == "sim":
            from rig.cameras.sim import sim_options

            options = sim_options(cfg, bench=bench.state if bench else None)
        camera = open_camera(cfg.camera, **options)
    except BaseException:
        for device in reversed(opened):
            with contextlib.suppress(Exception):
                device.close()
        if bench is not None:
            bench.stop()
        raise
    if bench is None:
        return Rig(cfg, stage, light, camera)
    bench.attach_camera(camera)
    return Rig(cfg, stage, light, camera, samples=bench, on_close=[bench.stop])
