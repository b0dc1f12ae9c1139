"""The simulated bench camera: renders what the real optics would show, when it is triggered.

Why it is built like a real camera rather than as a function that returns images: the scan code
must not be able to tell the difference. So

* a frame is exposed when a trigger arrives, either the ring-light emulator's trigger output
  (``trigger = "hardware"``: the camera subscribes to the bench state's trigger hooks while
  armed) or `Camera.trigger` (``software``); the bench (stage position, lit facets) is read at
  the trigger instant, like a shutter would;
* the frame is delivered exposure + readout after its trigger (rendering happens during that
  time in a worker thread; only the remainder is slept), so timeouts and throughput are real;
* frame ids count every exposure, and faults (`inject_fault`) drop, stall, fail or disconnect
  exactly like a flaky cable would, so the base class's gap detection is exercised for real.

The renderer is pluggable (`FrameRenderer`); by default it is the optics model of
``world.optics`` for the bench's virtual sample.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol

import numpy as np

from rig.camera import (
    AcquisitionSettings,
    Camera,
    CameraDisconnected,
    CameraError,
    CameraInfo,
    CameraNotFound,
    FeatureNotSupported,
    RawFrame,
)

log = logging.getLogger(__name__)

SIM_SERIAL = "SIM-0001"
N_FACETS = 12
N_STATES = 6
SIM_PIXEL_FORMATS = ("BayerGR12",)
# the simulated camera's GenICam nodes beyond its settings (a GigE camera's): name -> default;
# the read-only ones describe the device
SIM_WRITABLE_NODES: dict[str, bool | int | float | str] = {
    "GevHeartbeatTimeout": 3000, "GevSCPSPacketSize": 1500, "GevSCPD": 0,
    "DeviceLinkThroughputLimitMode": "Off", "DeviceLinkThroughputLimit": 125_000_000,
    "BlackLevel": 64.0,
}
SIM_READ_ONLY_NODES = ("DeviceModelName", "DeviceSerialNumber", "SensorWidth", "SensorHeight")
MAX_WIDTH, MAX_HEIGHT = 8192, 8192
DEFAULT_SAMPLE_ORIGIN_MM = (20.0, 20.0)  # stage position that puts the sample corner on axis
DEFAULT_PIXEL_SIZE_MM = 0.0114
DEFAULT_BLACK_LEVEL_DN = 64
DEFAULT_READ_NOISE_DN = 2.5
FREE_RUN_BUFFERS = 4  # frames the simulated transport holds in free-running mode

Fault = Literal["drop", "stall", "fail", "disconnect"]


@dataclass(frozen=True)
class RenderRequest:
    """Everything that determines one simulated exposure."""

    frame_id: int
    shape: tuple[int, int]  # (H, W)
    origin_px: tuple[int, int]  # (row, col) of the top-left pixel in the sample pixel frame
    stage_xy_mm: tuple[float, float]
    facet_levels: tuple[int, ...]  # PWM 0..255 of the 12 facets during the exposure
    state: int | None  # illumination state (facets k, k + 6) when that is what is lit
    exposure_us: float
    gain_db: float
    pixel_size_mm: float
    sample: Any = None  # the virtual glass on the stage (world.sample.Sample), if any
    subpixel_px: tuple[float, float] = (0.0, 0.0)  # true origin - origin_px (bench imperfections)

    @property
    def lit_facets(self) -> tuple[int, ...]:
        return tuple(f for f, v in enumerate(self.facet_levels) if v > 0)


class FrameRenderer(Protocol):
    def __call__(self, request: RenderRequest, /) -> np.ndarray:
        """uint16 (H, W) 12-bit GRBG RAW frame for the request."""
        ...


def dark_renderer(black_level_dn: int = DEFAULT_BLACK_LEVEL_DN,
                  read_noise_dn: float = DEFAULT_READ_NOISE_DN, seed: int = 0) -> FrameRenderer:
    """A sensor looking at nothing (black level + read noise): the fallback without optics."""

    def render(req: RenderRequest) -> np.ndarray:
        rng = np.random.default_rng((seed, req.frame_id))
        noise = rng.standard_normal(req.shape, dtype=np.float32) * read_noise_dn
        return np.clip(noise + black_level_dn, 0, 4095).astype(np.uint16)

    return render


def state_of_facets(lit: Sequence[int]) -> int | None:
    """Illumination state k when exactly facets k and k + 6 are lit (conventions), else None."""
    s = sorted(set(lit))
    if len(s) == 2 and s[1] == s[0] + 6 and 0 <= s[0] < 6:
        return s[0]
    return None


def origin_px_for_stage(stage_xy_mm: tuple[float, float], shape: tuple[int, int],
                        sample_origin_mm: tuple[float, float],
                        pixel_size_mm: float) -> tuple[int, int]:
    """Sample-pixel (row, col) of the frame's top-left for a stage position.

    The stage position ``sample_origin_mm`` puts the sample corner on the optical axis (the
    frame centre), as in rig.layout; origins are rounded to even to keep the Bayer phase.
    """
    cx = (stage_xy_mm[0] - sample_origin_mm[0]) / pixel_size_mm
    cy = (stage_xy_mm[1] - sample_origin_mm[1]) / pixel_size_mm
    h, w = shape
    return int(2 * round((cy - h / 2) / 2)), int(2 * round((cx - w / 2) / 2))


def optics_renderer(config: Any = None) -> FrameRenderer | None:
    """A renderer backed by the dark-field optics model (world.optics) that renders
    ``request.sample`` (a clean glass when None); None if the model cannot load.

    The exact ring-light state k at full PWM renders through the model's state path, so a frame
    equals ``DarkFieldRenderer.render(origin, k, frame_counter=frame_id)`` bit for bit; any other
    facet levels render as levels (PWM / 255). Gain scales the signal above black level (the
    optics model has no gain stage of its own).
    """
    try:
        from world import optics
        from world.sample import Sample
    except ImportError as exc:
        log.warning("optics model unavailable (%s)", exc)
        return None
    clean = Sample(seed=0, sample_id="CLEAN-GLASS")
    shifted = _ShiftedSamples()

    def render(req: RenderRequest) -> np.ndarray:
        sample = req.sample if req.sample is not None else clean
        sample = shifted.get(sample, req.subpixel_px, req.pixel_size_mm)
        r = optics.get_renderer(sample, (req.shape[1], req.shape[0]), req.pixel_size_mm, config)
        levels = np.asarray(req.facet_levels, np.float64) / 255.0
        if req.state is not None and np.array_equal(levels, optics.state_levels(req.state)):
            img = r.render(req.origin_px, req.state, frame_counter=req.frame_id,
                           exposure_us=req.exposure_us)
        else:
            img = r.render(req.origin_px, levels=levels, frame_counter=req.frame_id,
                           exposure_us=req.exposure_us)
        if req.gain_db:
            black = r.cfg.black_level_dn
            gain = 10.0 ** (req.gain_db / 20.0)
            img = np.clip((img.astype(np.float32) - black) * gain + black, 0,
                          r.cfg.full_scale_dn).astype(np.uint16)
        return img

    render.is_optics_renderer = True  # type: ignore[attr-defined]
    return render


class _ShiftedSamples:
    """The sample moved by a sub-pixel frame offset (bench imperfections), a few kept so the
    renderer's per-sample caches stay warm across the states of one RoI."""

    def __init__(self, keep: int = 2):
        self._cache: deque[tuple[tuple, Any, Any]] = deque(maxlen=keep)

    def get(self, sample: Any, subpixel_px: tuple[float, float], pixel_size_mm: float) -> Any:
        if not any(subpixel_px):
            return sample
        key = (id(sample), tuple(subpixel_px), float(pixel_size_mm))
        for k, original, moved in self._cache:
            if k == key and original is sample:
                return moved
        from world.imperfections import translate_sample

        # the frame's pixel (r, c) must see the true origin + (r, c): move the glass the other way
        moved = translate_sample(sample, -subpixel_px[1] * pixel_size_mm,
                                 -subpixel_px[0] * pixel_size_mm)
        self._cache.append((key, sample, moved))
        return moved


# -- bench access ---------------------------------------------------------------------------------
# The bench state (rig.sim.bench_state.BenchState) is owned by the stage / ring-light side; these
# two functions are the only places here that know its API.
@dataclass(frozen=True)
class _BenchView:
    stage_xy_mm: tuple[float, float]
    facet_levels: tuple[int, ...]
    state: int | None


def _bench_read(bench: Any, state_hint: int | None = None) -> _BenchView:
    """What the sensor sees at this instant. Inside a trigger hook the ring light's
    ``last_trigger`` event is the exact state at the rising edge, so prefer it."""
    if bench is None:
        return _BenchView((0.0, 0.0), (0,) * N_FACETS, state_hint)
    event = getattr(bench, "last_trigger", None)
    if state_hint is not None and event is not None and event.state == state_hint:
        return _BenchView(tuple(event.stage_xy_mm), tuple(event.facet_levels), event.state)
    snap = bench.snapshot()
    lit = tuple(int(v) for v in snap.facet_levels)
    state = snap.lit_state if snap.lit_state is not None else state_of_facets(
        [f for f, v in enumerate(lit) if v > 0])
    return _BenchView(tuple(snap.stage_xy_mm), lit, state)


def _bench_subscribe(bench: Any, hook: Callable[[int], None]) -> Callable[[], None]:
    """Subscribe ``hook(state)`` to the ring light's trigger output; returns the unsubscriber."""
    if not hasattr(bench, "add_trigger_hook"):
        raise CameraError("the bench state has no trigger hooks; cannot use hardware triggering")
    bench.add_trigger_hook(hook)
    return lambda: bench.remove_trigger_hook(hook)


# -- the camera -----------------------------------------------------------------------------------
@dataclass
class _Exposure:
    frame_id: int
    t_trigger: float
    view: _BenchView
    sample: Any
    settings: AcquisitionSettings
    fault: str = ""
    stall_s: float = 0.0


@dataclass
class _Faults:
    pending: deque[tuple[str, float]] = field(default_factory=deque)
    disconnected: bool = False


def sim_options(cfg: Any, bench: Any = None, sample: Any = None) -> dict[str, Any]:
    """`open_camera` keyword options for the sim backend from a StationConfig, so the bench
    builder needs to know nothing about the camera's internals."""
    return {"bench": bench, "sample": sample, "realtime": cfg.sim.realtime,
            "sample_origin_mm": tuple(cfg.stage.sample_origin_mm),
            "pixel_size_mm": cfg.scan.pixel_size_mm, "seed": cfg.sim.seed,
            "black_level_dn": cfg.camera.black_level_dn,
            "imperfections": imperfections_from_config(cfg)}


def imperfections_from_config(cfg: Any) -> Any:
    """The bench's true geometry from ``[sim] stage_rotation_deg`` / ``pixel_size_error``.

    None (an ideal bench, frames exactly at `origin_px_for_stage`) while the station config has
    neither key; a key that is present turns the model on with the other at its default.
    """
    sim = getattr(cfg, "sim", None)
    keys = ("stage_rotation_deg", "pixel_size_error")
    if sim is None or not any(hasattr(sim, k) for k in keys):
        return None
    from world.imperfections import BenchImperfections

    default = BenchImperfections()
    return BenchImperfections(
        stage_rotation_deg=float(getattr(sim, "stage_rotation_deg", default.stage_rotation_deg)),
        pixel_size_error=float(getattr(sim, "pixel_size_error", default.pixel_size_error)))


def list_cameras(**_: Any) -> list[CameraInfo]:
    """The simulated bench has one camera."""
    return [CameraInfo(backend="sim", serial=SIM_SERIAL, model="SimCam 3504x3120 GRBG12",
                       vendor="darkfield-station", name="Simulated bench camera", index=0)]


class SimCamera(Camera):
    """Simulated camera.

    ``bench``: the shared bench state (stage position, lit facets, trigger hooks); None gives a
    camera on a dark, still bench. ``sample``: the virtual glass on the stage (`set_sample` when
    the loader swaps it; a ``sample`` attribute on the bench is used when this is None).
    ``renderer``: what turns a `RenderRequest` into a frame (default: the optics model, or dark
    frames when it cannot load). ``realtime=False`` skips the exposure/readout wait.
    ``imperfections``: the bench's true geometry (`world.imperfections.BenchImperfections`:
    stage rotation, true pixel pitch); None renders an ideal bench at `origin_px_for_stage`.
    """

    backend = "sim"

    def __init__(self, serial: str = "", index: int | None = None, *, bench: Any = None,
                 sample: Any = None, renderer: FrameRenderer | None = None,
                 realtime: bool = True,
                 sample_origin_mm: tuple[float, float] = DEFAULT_SAMPLE_ORIGIN_MM,
                 pixel_size_mm: float = DEFAULT_PIXEL_SIZE_MM,
                 black_level_dn: int = DEFAULT_BLACK_LEVEL_DN, seed: int = 0,
                 optics_config: Any = None, imperfections: Any = None):
        super().__init__(serial, index)
        self.bench = bench
        self.sample = sample
        self.renderer = renderer
        self.realtime = realtime
        self.sample_origin_mm = (float(sample_origin_mm[0]), float(sample_origin_mm[1]))
        self.pixel_size_mm = pixel_size_mm
        self.black_level_dn = black_level_dn
        self.seed = seed
        self.optics_config = optics_config
        self.imperfections = imperfections
        self._faults = _Faults()
        self._fault_lock = threading.Lock()
        self._next_id = 0
        self._pending: queue.Queue[_Exposure | None] = queue.Queue()
        self._out: queue.Queue[RawFrame | BaseException] = queue.Queue()
        self._stop_event = threading.Event()
        self._worker: threading.Thread | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self._ticker: threading.Thread | None = None
        # render-ahead (see _render_ahead): frames rendered during a move, by request
        self._render_lock = threading.Lock()  # one render at a time (the renderer's caches)
        self._ahead: dict[tuple[Any, ...], np.ndarray] = {}
        self._ahead_jobs: queue.Queue[tuple[float, float] | None] = queue.Queue()
        self._ahead_worker: threading.Thread | None = None
        self._unsubscribe_motion: Callable[[], None] | None = None
        self._seen_levels: dict[int, tuple[int, ...]] = {}  # facet levels each state was lit at
        self.ahead_hits = 0  # exposures served from render-ahead (for tests and benchmarks)
        self.nodes: dict[str, bool | int | float | str] = dict(SIM_WRITABLE_NODES)

    # -- faults ------------------------------------------------------------------------------
    def inject_fault(self, fault: Fault, count: int = 1, stall_s: float = 5.0,
                     after: int = 0) -> None:
        """Make ``count`` exposures misbehave, starting ``after`` good ones from now:

        * ``drop``: the frame is lost in transfer (its id is used, nothing arrives);
        * ``stall``: it arrives ``stall_s`` late (the grab times out first);
        * ``fail``: it arrives as a failed (incomplete) buffer;
        * ``disconnect``: the camera goes away now (count ignored) until `reconnect`.
        """
        if fault == "disconnect":
            with self._fault_lock:
                self._faults.disconnected = True
            self._out.put(CameraDisconnected(f"{self._who()} disconnected (injected fault)"))
            return
        if fault not in ("drop", "stall", "fail"):
            raise ValueError(f"unknown camera fault {fault!r}")
        with self._fault_lock:
            self._faults.pending.extend([("", 0.0)] * after + [(fault, stall_s)] * count)

    def reconnect(self) -> None:
        """Plug the cable back in (after an injected disconnect); the camera must be reopened."""
        with self._fault_lock:
            self._faults.disconnected = False

    def _check_connected(self) -> None:
        if self._faults.disconnected:
            raise CameraDisconnected(f"{self._who()} is disconnected; reconnect and reopen it")

    # -- lifecycle ---------------------------------------------------------------------------
    def _open(self) -> CameraInfo:
        if self._faults.disconnected:
            raise CameraNotFound(f"simulated camera {SIM_SERIAL} is disconnected")
        if self.serial and self.serial != SIM_SERIAL:
            raise CameraNotFound(f"no simulated camera with serial {self.serial}; "
                                 f"the bench has {SIM_SERIAL}")
        if self.index not in (None, 0):
            raise CameraNotFound(f"no simulated camera with index {self.index}; the bench has one")
        if self.renderer is None:
            self.renderer = self._default_renderer()
        self._settings = AcquisitionSettings(trigger="software", readout_s=0.06)
        if hasattr(self.bench, "add_motion_hook"):
            self._ahead_jobs = queue.Queue()
            self._ahead_worker = threading.Thread(target=self._render_ahead,
                                                  args=(self._ahead_jobs,),
                                                  name="sim-camera-render-ahead", daemon=True)
            self._ahead_worker.start()
            self._unsubscribe_motion = self.bench.add_motion_hook(self._on_stage_target)
        return list_cameras()[0]

    def _default_renderer(self) -> FrameRenderer:
        renderer = optics_renderer(self.optics_config)
        if renderer is None:
            log.warning("%s: no optics model available; rendering dark frames", self._who())
            return dark_renderer(self.black_level_dn, seed=self.seed)
        return renderer

    def _close(self) -> None:
        self._stop_worker()
        if self._unsubscribe_motion is not None:
            self._unsubscribe_motion()
            self._unsubscribe_motion = None
        if self._ahead_worker is not None:
            self._ahead_jobs.put(None)
            self._ahead_worker.join(timeout=10)
            self._ahead_worker = None
        self._ahead.clear()

    # -- render-ahead ------------------------------------------------------------------------
    # The simulator's own cost, not the camera's: rendering a full frame takes about as long as
    # exposure + readout. The stage emulator announces each move's target as it starts; this
    # worker renders the next stack there (frame ids 0.. of the next arm, the states and facet
    # levels last seen), so the exposure at the trigger finds its frame ready. A frame is only
    # used when its whole request (position, levels, state, settings, sample, renderer) is the
    # one the trigger makes; otherwise it is rendered then. Delivery keeps the camera's timing.
    def _on_stage_target(self, xy_mm: tuple[float, float]) -> None:
        with contextlib.suppress(queue.Empty):
            while True:  # only the newest target matters
                self._ahead_jobs.get_nowait()
        self._ahead_jobs.put(xy_mm)

    def _render_ahead(self, jobs: queue.Queue[tuple[float, float] | None]) -> None:
        while (xy := jobs.get()) is not None:
            states = self._states or tuple(range(N_STATES))
            for frame_id, state in enumerate(states):
                levels = self._seen_levels.get(state)
                if levels is None or not jobs.empty():
                    break  # never lit yet, or the stage is already going elsewhere
                try:
                    request = self._request(frame_id, _BenchView(xy, levels, state),
                                            self._current_sample(), self._settings)
                    key = self._ahead_key(request)
                    with self._render_lock:
                        if key not in self._ahead:
                            self._ahead[key] = self._render(request)
                            while len(self._ahead) > 2 * N_STATES:
                                self._ahead.pop(next(iter(self._ahead)))
                except Exception:  # noqa: BLE001 - the trigger renders it then
                    log.debug("render-ahead of frame %d failed", frame_id, exc_info=True)
                    break

    def _ahead_key(self, request: RenderRequest) -> tuple[Any, ...]:
        return (replace(request, sample=None), id(request.sample), id(self.renderer))

    def _request(self, frame_id: int, view: _BenchView, sample: Any,
                 s: AcquisitionSettings) -> RenderRequest:
        shape = (s.height or 0, s.width or 0)
        origin, pixel_size, frac = self.frame_geometry(view.stage_xy_mm, shape)
        return RenderRequest(
            frame_id=frame_id, shape=shape, origin_px=origin,
            stage_xy_mm=view.stage_xy_mm, facet_levels=view.facet_levels, state=view.state,
            exposure_us=float(s.exposure_us or 0), gain_db=float(s.gain_db or 0),
            pixel_size_mm=pixel_size, sample=sample, subpixel_px=frac)

    def _render(self, request: RenderRequest) -> np.ndarray:
        assert self.renderer is not None
        image = np.asarray(self.renderer(request))
        if image.shape != request.shape or image.dtype != np.uint16:
            raise CameraError(f"renderer returned {image.dtype} {image.shape}, "
                              f"expected uint16 {request.shape}")
        return image

    def _frame_for(self, request: RenderRequest) -> np.ndarray:
        """The exposure's frame: rendered ahead when it was, else now."""
        key = self._ahead_key(request)
        with self._render_lock:
            image = self._ahead.pop(key, None)
            if image is not None:
                self.ahead_hits += 1
                return image
            return self._render(request)

    # -- settings ----------------------------------------------------------------------------
    def _apply(self, s: AcquisitionSettings) -> AcquisitionSettings:
        self._check_connected()
        if s.pixel_format not in SIM_PIXEL_FORMATS:
            raise FeatureNotSupported(f"pixel format {s.pixel_format}", self._who(),
                                      f"it offers {', '.join(SIM_PIXEL_FORMATS)}")
        if s.width is None or s.height is None or s.width > MAX_WIDTH or s.height > MAX_HEIGHT:
            raise FeatureNotSupported(f"size {s.width}x{s.height}", self._who(),
                                      f"width and height are required, at most "
                                      f"{MAX_WIDTH}x{MAX_HEIGHT}")
        if s.exposure_us is None:
            raise FeatureNotSupported("an unset exposure time", self._who())
        if s.trigger == "hardware" and s.trigger_line != "Line1":
            raise FeatureNotSupported(f"trigger line {s.trigger_line}", self._who(),
                                      "the ring light is wired to Line1")
        return s

    def _write_feature(self, name: str, value: bool | int | float | str
                       ) -> bool | int | float | str:
        self._check_connected()
        if name in SIM_READ_ONLY_NODES:
            raise CameraError(f"{self._who()}: {name} is read-only; remove it from "
                              "[camera.features]")
        if name not in SIM_WRITABLE_NODES:
            raise FeatureNotSupported(name, self._who(), "no such node (writable nodes: "
                                      f"{', '.join(SIM_WRITABLE_NODES)})")
        if type(value) is not type(SIM_WRITABLE_NODES[name]):
            raise CameraError(f"{self._who()}: {name} takes a "
                              f"{type(SIM_WRITABLE_NODES[name]).__name__}, not {value!r}")
        self.nodes[name] = value
        return value

    # -- acquisition -------------------------------------------------------------------------
    def _start(self) -> int | None:
        self._check_connected()
        self._stop_worker()
        self._next_id = 0
        self._pending = queue.Queue()
        self._out = queue.Queue()
        self._stop_event = threading.Event()
        self._worker = threading.Thread(target=self._run,
                                        args=(self._pending, self._out, self._stop_event),
                                        name="sim-camera", daemon=True)
        self._worker.start()
        if self._settings.trigger == "hardware":
            if self.bench is None:
                raise CameraError(f"{self._who()}: hardware trigger needs the bench (ring light)")
            self._unsubscribe = _bench_subscribe(self.bench, self._on_hardware_trigger)
        elif self._settings.trigger == "off":
            self._ticker = threading.Thread(target=self._free_run, args=(self._stop_event,),
                                            name="sim-camera-free-run", daemon=True)
            self._ticker.start()
        return 0

    def _stop(self) -> None:
        self._stop_worker()

    def _stop_worker(self) -> None:
        if self._unsubscribe is not None:
            try:
                self._unsubscribe()
            finally:
                self._unsubscribe = None
        self._stop_event.set()
        if self._ticker is not None:
            self._ticker.join(timeout=10)
            self._ticker = None
        if self._worker is not None:
            self._pending.put(None)
            self._worker.join(timeout=10)
            self._worker = None

    def _free_run(self, stop: threading.Event) -> None:
        """Free-running mode (live view): expose back to back. Like a real camera with a small
        buffer pool, frames nobody fetches in time are lost (their ids are used)."""
        s = self._settings
        period = (s.exposure_us or 0) * 1e-6 + s.readout_s
        while not stop.wait(period if self.realtime else 0.001):
            if self._faults.disconnected:
                return
            if self._out.qsize() + self._pending.qsize() >= FREE_RUN_BUFFERS:
                with self._fault_lock:
                    self._next_id += 1  # overrun: this exposure is lost
                continue
            self._expose(None)

    def set_sample(self, sample: Any) -> None:
        """The glass now on the stage (exposures after this call see it)."""
        self.sample = sample

    def set_optics(self, config: Any) -> None:
        """Render with another optics model (`world.optics.OpticsConfig`: shading, facet
        balance, hot pixels...) from the next exposure on; keeps a custom renderer."""
        self.optics_config = config
        if self.renderer is None or getattr(self.renderer, "is_optics_renderer", False):
            self.renderer = self._default_renderer()

    def set_imperfections(self, imperfections: Any) -> None:
        """Change the bench's true geometry (None: ideal); exposures after this call see it."""
        self.imperfections = imperfections

    def frame_geometry(self, stage_xy_mm: tuple[float, float], shape: tuple[int, int]
                       ) -> tuple[tuple[int, int], float, tuple[float, float]]:
        """What a frame taken at this stage position shows: (even origin_px, true pixel size
        in mm, sub-pixel remainder (row, col) of the true origin beyond origin_px)."""
        imp = self.imperfections
        if imp is None:
            return (origin_px_for_stage(stage_xy_mm, shape, self.sample_origin_mm,
                                        self.pixel_size_mm), self.pixel_size_mm, (0.0, 0.0))
        from world.imperfections import split_origin

        exact = imp.frame_origin(stage_xy_mm, shape, self.sample_origin_mm, self.pixel_size_mm)
        origin, frac = split_origin(exact)
        return origin, imp.pixel_size_mm(self.pixel_size_mm), frac

    def truth_at(self, stage_xy_mm: tuple[float, float], shape: tuple[int, int] | None = None,
                 config: Any = None) -> Any:
        """Ground truth (recordings.RoiTruth) of the frame this camera takes at a stage position,
        in that frame's pixels: with bench imperfections the frame is not where the nominal RoI
        layout says, so truth must come from here to line up with the image."""
        from world import optics

        s = self._settings
        shape = shape or (int(s.height or 0), int(s.width or 0))
        sample = self._current_sample()
        if sample is None:
            return None
        origin, pix, frac = self.frame_geometry(stage_xy_mm, shape)
        moved = _ShiftedSamples().get(sample, frac, pix)
        return optics.roi_truth(moved, origin, (shape[1], shape[0]), pix,
                                config if config is not None else self.optics_config)

    def _current_sample(self) -> Any:
        return self.sample if self.sample is not None else getattr(self.bench, "sample", None)

    def _on_hardware_trigger(self, state: int | None = None, *_: Any) -> None:
        """Called by the ring-light emulator (its thread) when it pulses the trigger line."""
        if self._armed and not self._faults.disconnected:
            self._expose(state)

    def _software_trigger(self, timeout_s: float) -> None:
        self._check_connected()
        self._expose(None)

    def _expose(self, state_hint: int | None) -> None:
        view = _bench_read(self.bench, state_hint)
        with self._fault_lock:
            fault, stall = self._faults.pending.popleft() if self._faults.pending else ("", 0.0)
            frame_id = self._next_id
            self._next_id += 1
        self._pending.put(_Exposure(frame_id, time.monotonic(), view, self._current_sample(),
                                    self._settings, fault, stall))

    def _run(self, pending: queue.Queue[_Exposure | None],
             out: queue.Queue[RawFrame | BaseException], stop: threading.Event) -> None:
        """Worker: render each exposure, then deliver it exposure + readout after its trigger."""
        while (exp := pending.get()) is not None and not stop.is_set():
            try:
                s = exp.settings
                request = self._request(exp.frame_id, exp.view, exp.sample, s)
                if exp.view.state is not None:
                    self._seen_levels[exp.view.state] = exp.view.facet_levels
                image = self._frame_for(request)
                meta: dict[str, Any] = {"stage_xy_mm": request.stage_xy_mm,
                                        "facet_levels": request.facet_levels,
                                        "origin_px": request.origin_px}
                if self.imperfections is not None:  # where the frame truly is (sim only)
                    meta["true_pixel_size_mm"] = request.pixel_size_mm
                    meta["subpixel_px"] = request.subpixel_px
                if self.realtime:
                    due = exp.t_trigger + (s.exposure_us or 0) * 1e-6 + s.readout_s
                    delay = due - time.monotonic() + (exp.stall_s if exp.fault == "stall" else 0)
                    if delay > 0 and stop.wait(delay):
                        return
                elif exp.fault == "stall" and stop.wait(exp.stall_s):
                    return
                if exp.fault == "drop":
                    continue
                if exp.fault == "fail":
                    out.put(RawFrame(None, exp.frame_id, ok=False,
                                     error="incomplete buffer (injected fault)"))
                    continue
                out.put(RawFrame(image, exp.frame_id, state=request.state, meta=meta,
                                 device_timestamp=int(exp.t_trigger * 1e9)))
            except Exception as exc:  # noqa: BLE001 - hand it to the grabbing thread
                log.exception("simulated camera: rendering frame %d failed", exp.frame_id)
                out.put(CameraError(f"simulated camera: rendering frame {exp.frame_id} failed: "
                                    f"{exc}"))

    def _retrieve(self, timeout_s: float) -> RawFrame | None:
        self._check_connected()
        try:
            item = self._out.get(timeout=timeout_s)
        except queue.Empty:
            self._check_connected()
            return None
        if isinstance(item, BaseException):
            raise item
        return item
