"""Station configuration: one TOML file per station, validated on load.

Every number of the station (README, docs/) is a default here and a setting in the file. Validation errors are
turned into one message per problem naming the key, the bad value and what is allowed, so an
operator can fix the file without reading a traceback.
"""

from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from errors import ConfigError, describe_validation_error

BUNDLED_PROFILES = ("sim", "fast")


class _Section(BaseModel):
    # unknown keys are typos; inf and nan are never a setting (`exposure_us = inf`)
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


Positive = Annotated[float, Field(gt=0)]


class StationInfo(_Section):
    name: str = "sim-bench"
    description: str = ""


class StageSettings(_Section):
    """XY translator. `port = "sim"` starts the GRBL emulator on a pseudo-terminal."""

    controller: Literal["grbl"] = "grbl"
    port: str = "sim"
    serial_number: str = Field("", description="USB serial number of the adapter; when set, "
                               "the port is found by it at every (re)open, wherever the adapter "
                               "re-enumerated (`port` is then only used if it is not found)")
    baudrate: int = Field(115200, gt=0)
    max_speed_mm_s: Positive = 50.0
    acceleration_mm_s2: Positive = 500.0
    x_limits_mm: tuple[float, float] = (0.0, 200.0)
    y_limits_mm: tuple[float, float] = (0.0, 250.0)
    sample_origin_mm: tuple[float, float] = Field(
        (20.0, 20.0), description="stage position that puts the sample's corner at the optical axis"
    )
    settle_s: float = Field(0.05, ge=0)
    home_on_open: bool = True
    rehome_after_alarm: bool = True
    command_timeout_s: Positive = 2.0

    @model_validator(mode="after")
    def _limits_ordered(self) -> StageSettings:
        for name in ("x_limits_mm", "y_limits_mm"):
            lo, hi = getattr(self, name)
            if lo >= hi:
                raise ValueError(f"{name}: lower limit {lo} must be below upper limit {hi}")
        return self


class LightSettings(_Section):
    """Ring illuminator: 12 facets, 6 states (facets k and k+6)."""

    port: str = "sim"
    serial_number: str = Field("", description="USB serial number of the board, as for "
                               "[stage] serial_number")
    baudrate: int = Field(115200, gt=0)
    facet_levels: tuple[int, ...] = Field((255,) * 12, description="PWM 0..255 per facet")
    trigger_pulse_us: int = Field(100, gt=0, le=100_000)
    command_timeout_s: Positive = 1.0

    @model_validator(mode="after")
    def _twelve_levels(self) -> LightSettings:
        if len(self.facet_levels) != 12 or not all(0 <= v <= 255 for v in self.facet_levels):
            raise ValueError("facet_levels must be 12 integers in 0..255")
        return self


class CameraSettings(_Section):
    backend: Literal["sim", "pylon", "genicam"] = "sim"
    serial: str = Field("", description="camera serial number; empty = first camera found")
    cti: str = Field("", description="GenTL producer (.cti) for the genicam backend")
    width: int = Field(3504, gt=0, le=16384, multiple_of=2)
    height: int = Field(3120, gt=0, le=16384, multiple_of=2)
    pixel_format: Literal["BayerGR12"] = "BayerGR12"
    exposure_us: float = Field(20000.0, gt=0, le=10_000_000)
    gain_db: float = Field(0.0, ge=0, le=48)
    trigger: Literal["hardware", "software"] = "hardware"
    black_level_dn: int = Field(64, ge=0, lt=4096)
    readout_s: float = Field(0.06, ge=0, le=10, description="sensor readout + transfer per "
                             "frame")
    frame_timeout_margin_s: float = Field(1.0, ge=0, le=60)
    # transport (empty: leave as the camera has it; docs/cameras.md)
    heartbeat_timeout_ms: int | None = Field(None, ge=500, le=600_000, description="GigE: "
                                             "how long the camera waits for the host before "
                                             "it drops the link (GevHeartbeatTimeout)")
    packet_size_bytes: int | None = Field(None, ge=220, le=16_404, description="GigE: stream "
                                          "packet size (GevSCPSPacketSize); jumbo frames "
                                          "need the NIC set to match")
    inter_packet_delay_ticks: int | None = Field(None, ge=0, le=1_000_000, description="GigE: "
                                                 "delay between stream packets (GevSCPD)")
    throughput_limit_bytes_s: int | None = Field(None, gt=0, le=2_000_000_000, description=(
        "USB3 / GigE: DeviceLinkThroughputLimit, to share a bus or hub"))
    features: dict[str, bool | int | float | str] = Field(
        default_factory=dict, description="[camera.features]: any further GenICam node = "
        "value, written in order after the station's own settings")


class SampleSettings(_Section):
    width_mm: Positive = 72.0
    length_mm: Positive = 150.0
    corner_radius_mm: float = Field(6.0, ge=0)


class ScanSettings(_Section):
    columns: int = Field(2, ge=1, le=50)
    rows: int = Field(5, ge=1, le=50)
    min_overlap_px: int = Field(256, ge=0, le=8192)
    pixel_size_mm: Positive = 0.0114
    states: int = Field(6, description="illumination states per RoI; only 6 is supported")
    reconnect_s: float = Field(30.0, ge=0, le=3600, description="how long a scan waits for a "
                               "lost device (camera unplugged, USB adapter re-enumerated) to "
                               "come back, reopening it with back-off; 0 = fail at once")
    reconnects_per_roi: int = Field(3, ge=0, le=100)

    @model_validator(mode="after")
    def _all_six_states(self) -> ScanSettings:
        if self.states != 6:  # the recording format, the detector and the signature need all 6
            raise ValueError(f"states = {self.states}: every RoI is captured in all 6 "
                             "illumination states (recordings and the detector need them); "
                             "remove the key or set it to 6")
        return self


class DetectorSettings(_Section):
    model: str = Field("", description="weights file (.safetensors); empty = bundled model")
    device: Literal["cpu", "cuda", "auto"] = "auto"
    tile_px: int = Field(1024, ge=64, le=16384, multiple_of=64)
    tile_overlap_px: int = Field(256, ge=0)
    batch_size: int = Field(4, ge=1, le=256)
    threads: int = Field(0, ge=0, le=1024, description="CPU threads for the network; 0 = all "
                         "cores (acquisition mostly waits on the devices)")
    engine: Literal["auto", "torch", "onnxruntime", "openvino"] = Field(
        "auto", description="network runtime; auto = the fastest installed one whose output "
        "matches PyTorch's, measured once per model and machine (inference/engines.py)")
    t_low: float | None = Field(None, gt=0, lt=1, description="empty = the model card's "
                                "operating point (paper: 0.25)")
    t_high: float | None = Field(None, gt=0, le=1, description="empty = the model card's "
                                 "operating point (paper: 0.75)")
    min_high_px: int | None = Field(None, ge=1, description="empty = the model card's: map "
                                    "pixels of a cluster that must reach t_high (paper: 1)")
    dbscan_eps: Positive = 25.0
    dbscan_min_samples: int = Field(16, ge=1, le=100_000)
    cluster_downscale: int = Field(8, ge=1, le=64)
    clusterer: Literal["dbscan", "hysteresis"] = Field(
        "hysteresis", description="hysteresis = same objects as DBSCAN, faster (bench/bench_postprocess.py)")
    contaminant_threshold: float = Field(0.3, gt=0, lt=1)
    edge_band_mm: float = Field(0.5, ge=0, le=20, description="contaminants lying mostly "
                                "outside the glass or this close inside its outline are the "
                                "edge, not listed (scratches are never masked); 0 = off")

    @model_validator(mode="after")
    def _thresholds_ordered(self) -> DetectorSettings:
        if self.t_low is not None and self.t_high is not None and self.t_low > self.t_high:
            raise ValueError(f"t_low ({self.t_low}) must not exceed t_high ({self.t_high})")
        if self.tile_overlap_px >= self.tile_px // 2:
            raise ValueError("tile_overlap_px must be less than half of tile_px")
        return self


class PathSettings(_Section):
    recordings: Path = Path("out/recordings")
    calibrations: Path = Path("calibrations")


class CalibrationSettings(_Section):
    use: str = Field("latest", description='"latest" (newest of this station, if any), '
                     'a calibration id, or "" for none')


class SimSettings(_Section):
    """Simulated bench only: the virtual sample generator and timing."""

    seed: int = 0
    scratch_fraction: float = Field(0.3, ge=0, le=1)
    realtime: bool = Field(True, description="devices take real time (moves, exposure, readout)")


class StationConfig(_Section):
    station: StationInfo = StationInfo()
    stage: StageSettings = StageSettings()
    light: LightSettings = LightSettings()
    camera: CameraSettings = CameraSettings()
    sample: SampleSettings = SampleSettings()
    scan: ScanSettings = ScanSettings()
    detector: DetectorSettings = DetectorSettings()
    paths: PathSettings = PathSettings()
    calibration: CalibrationSettings = CalibrationSettings()
    sim: SimSettings = SimSettings()
    source: str = Field("", exclude=True, description="where this config was read from")

    @property
    def is_simulated(self) -> bool:
        return self.camera.backend == "sim"

    def simulated(self) -> StationConfig:
        """The same station on the simulated bench: emulated stage and light, rendered camera."""
        return self.model_copy(update={
            "stage": self.stage.model_copy(update={"port": "sim"}),
            "light": self.light.model_copy(update={"port": "sim"}),
            "camera": self.camera.model_copy(update={"backend": "sim"}),
        })

    def to_json_dict(self) -> dict[str, Any]:
        """The config as plain JSON types, stored in every recording."""
        return self.model_dump(mode="json")


def parse_config(data: dict[str, Any], source: str = "<dict>") -> StationConfig:
    try:
        return StationConfig.model_validate({**data, "source": source})
    except ValidationError as exc:
        problems = "\n  ".join(describe_validation_error(
            dict(e), unknown_hint=" (check the spelling against the bundled sim profile)")
            for e in exc.errors())
        raise ConfigError(f"invalid station config {source}:\n  {problems}") from None


def load_config(path: str | Path | None = None) -> StationConfig:
    """Load a station TOML file, or a bundled profile (`sim` when `path` is None)."""
    if path is None or str(path) in BUNDLED_PROFILES:
        name = "sim" if path is None else str(path)
        text = resources.files("rig.profiles").joinpath(f"{name}.toml").read_text()
        source = f"bundled profile '{name}'"
    else:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(
                f"station config {p} not found; pass --config with an existing TOML file "
                f"or use a bundled profile ({', '.join(BUNDLED_PROFILES)})"
            )
        try:
            text, source = p.read_text(encoding="utf-8"), str(p)
        except UnicodeDecodeError as exc:
            raise ConfigError(f"station config {p} is not UTF-8 text (byte {exc.start}): is it "
                              "a TOML file? Save it as UTF-8") from None
        except OSError as exc:
            raise ConfigError(f"station config {p} cannot be read: {exc.strerror}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"station config {source} is not valid TOML: {exc}") from None
    return parse_config(data, source)
