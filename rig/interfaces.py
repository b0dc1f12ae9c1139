"""The rig's typed seams: what the scan runner, the inspection run, calibration and the GUI may
call on the devices, whatever implements them.

- `Stage` and `Camera` are the drivers' own small ABCs (rig.stage, rig.camera): every
  implementation (GRBL; pypylon, harvesters, simulated camera) passes the same interface tests.
- `RingLight` is the protocol of the ring illuminator (rig.ringlight.RingLight implements it).
- `SampleHolder` is what lies under the camera: on a real station the operator loads glass and
  places calibration targets (nothing to do here, no truth); on the simulated bench
  (rig.sim.bench.SimulatedBench) a virtual sample or target is put there and its ground truth
  is known. The rig itself knows nothing of virtual samples.
- `Rig` is the composed station the runner drives.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Literal, Protocol, runtime_checkable

from errors import ConnectionLost
from rig.camera import Camera, Frame
from rig.stage import Stage

if TYPE_CHECKING:
    from recordings import RoiTruth
    from rig import ringlight_protocol as rp
    from rig.config import StationConfig
    from rig.layout import RoiGeometry
    from rig.ringlight import TriggerResult

TargetKind = Literal["diffuser", "fiducial"]


@runtime_checkable
class RingLight(Protocol):
    """Twelve LED facets lit in opposite pairs (six states); fires the camera in hardware mode."""

    def open(self) -> None: ...
    def close(self) -> None: ...
    @property
    def is_open(self) -> bool: ...
    def status(self) -> rp.LightStatus: ...
    def levels(self) -> tuple[int, ...]: ...
    def set_levels(self, levels: Sequence[int]) -> None: ...
    def select_state(self, state: int) -> None: ...
    def all_off(self) -> None: ...
    def arm(self, states: int | Sequence[int]) -> tuple[int, ...]: ...
    def disarm(self) -> None: ...
    def trigger(self) -> TriggerResult: ...
    @property
    def step_done_at(self) -> float: ...
    @property
    def can_run(self) -> bool: ...
    def run(self, period_s: float) -> TriggerResult: ...


@runtime_checkable
class SampleHolder(Protocol):
    """What lies under the camera, and what is known about it."""

    def load_sample(self, sample_id: str) -> None:
        """A new sample is under the camera (the operator loaded it, or a virtual one is put)."""

    def place_target(self, kind: TargetKind, field_mm: tuple[float, float],
                     pixel_size_mm: float, seed: int) -> tuple[float, float] | None:
        """Put a calibration target under the camera; the stage position of its centre, or
        None when a person has to place it (then the caller asks the operator)."""

    def remove_target(self) -> None:
        """Put back the sample that was there before `place_target`."""

    def truth(self, roi: RoiGeometry) -> RoiTruth | None:
        """Ground truth of an RoI where it is known (simulated bench), else None."""


class ManualLoading:
    """A real station: the operator loads samples and places targets; no ground truth."""

    def load_sample(self, sample_id: str) -> None:
        return None

    def place_target(self, kind: TargetKind, field_mm: tuple[float, float],
                     pixel_size_mm: float, seed: int) -> tuple[float, float] | None:
        return None

    def remove_target(self) -> None:
        return None

    def truth(self, roi: RoiGeometry) -> RoiTruth | None:
        return None


@runtime_checkable
class Rig(Protocol):
    """Stage + ring light + camera + what is under the camera, as the scan runs them."""

    cfg: StationConfig
    stage: Stage
    light: RingLight
    camera: Camera
    samples: SampleHolder

    @property
    def layout(self) -> tuple[RoiGeometry, ...]: ...
    @property
    def calibration_id(self) -> str: ...
    @property
    def simulated(self) -> bool: ...
    def use_calibration(self, calibration_id: str,
                        layout: tuple[RoiGeometry, ...] | None = None,
                        led_levels: Sequence[int] | None = None) -> None: ...
    def move_to(self, xy_mm: tuple[float, float], timeout_s: float | None = None) -> None: ...
    def start_move(self, xy_mm: tuple[float, float]) -> None: ...
    def wait_moved(self, timeout_s: float | None = None) -> None: ...
    def acquire_stack(self, states: Sequence[int], exposure_us: float, trigger: str,
                      frame_timeout_s: float, on_frame: Callable[[Frame], None] | None = None,
                      on_exposed: Callable[[], None] | None = None) -> list[Frame]: ...
    def reconnect(self, lost: ConnectionLost, within_s: float) -> str: ...
    def make_safe(self) -> None: ...
    def close(self) -> None: ...


__all__ = ["Camera", "ManualLoading", "RingLight", "Rig", "SampleHolder", "Stage", "TargetKind"]
