"""XY translator interface shared by every stage controller (GRBL today; Zaber ASCII, Marlin later).

The scan sequence only talks to :class:`Stage`. A controller driver maps its own protocol onto it:
absolute moves in millimetres in the *stage frame* (the frame the soft limits are given in), a
status that can be waited on with a timeout, and one exception hierarchy whose messages say what
happened, where, and what to do, so an operator can act without a traceback.
"""

from __future__ import annotations

import abc
import enum
import math
from dataclasses import dataclass
from types import TracebackType

from errors import ConnectionLost, DeviceAlarm, DeviceError, DeviceTimeout, ProtocolError


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------
class StageError(DeviceError):
    """Base of every stage failure. ``port`` names the device when known."""

    def __init__(self, message: str, *, port: str | None = None) -> None:
        super().__init__(message)
        self.port = port


class StageConnectionError(StageError, ConnectionLost):
    """The controller cannot be reached: port missing, wrong device, cable pulled, reset."""


class StageProtocolError(StageError, ProtocolError):
    """The controller answered, but not in a way this driver understands (wrong firmware...)."""


class StageTimeoutError(StageError, DeviceTimeout):
    """No reply, or the move did not finish, within the time it should have taken."""


class StageLimitError(StageError):
    """A target outside the soft limits (nothing sent), or beyond the travel GRBL allows a jog
    (refused by the controller); either way the stage did not move."""


class StageCommandError(StageError):
    """The controller rejected a command. ``code``/``controller_text`` are the controller's own."""

    def __init__(
        self, message: str, *, code: int | None = None, controller_text: str = "",
        command: str = "", port: str | None = None,
    ) -> None:
        super().__init__(message, port=port)
        self.code = code
        self.controller_text = controller_text
        self.command = command


class StageAlarmError(StageError, DeviceAlarm):
    """The controller is (or went) into an alarm state; motion is locked.

    ``recovered`` is True when the driver already brought the controller back to a usable
    state (reset, unlock or re-home, as configured); the interrupted move was *not* repeated.
    """

    def __init__(
        self, message: str, *, code: int | None = None, controller_text: str = "",
        recovered: bool = False, port: str | None = None,
    ) -> None:
        super().__init__(message, port=port)
        self.code = code
        self.controller_text = controller_text
        self.recovered = recovered


class StageMotionError(StageError):
    """A move ended somewhere other than its target (stopped, held, controller idle elsewhere)."""


class StageStateError(StageError):
    """The call is not allowed now (port not open, controller not homed...)."""


# --------------------------------------------------------------------------------------------
# Value types
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class StageLimits:
    """Soft limits in the stage frame, millimetres, inclusive."""

    x_min: float
    x_max: float
    y_min: float
    y_max: float

    def __post_init__(self) -> None:
        if not (self.x_min < self.x_max and self.y_min < self.y_max):
            raise ValueError(f"stage limits must have min < max, got {self}")

    @classmethod
    def from_ranges(cls, x: tuple[float, float], y: tuple[float, float]) -> StageLimits:
        return cls(float(x[0]), float(x[1]), float(y[0]), float(y[1]))

    def contains(self, x: float, y: float, tol: float = 1e-9) -> bool:
        return (self.x_min - tol <= x <= self.x_max + tol) and (
            self.y_min - tol <= y <= self.y_max + tol
        )

    def check(self, x: float, y: float, *, port: str | None = None) -> None:
        """Raise :class:`StageLimitError` naming the offending axis when (x, y) is outside."""
        if not (math.isfinite(x) and math.isfinite(y)):
            raise StageLimitError(f"target ({x}, {y}) is not a finite position", port=port)
        problems = []
        if not self.x_min - 1e-9 <= x <= self.x_max + 1e-9:
            problems.append(f"x = {x:.3f} mm outside {self.x_min:.3f}..{self.x_max:.3f} mm")
        if not self.y_min - 1e-9 <= y <= self.y_max + 1e-9:
            problems.append(f"y = {y:.3f} mm outside {self.y_min:.3f}..{self.y_max:.3f} mm")
        if problems:
            raise StageLimitError(
                "target beyond the stage soft limits: " + "; ".join(problems)
                + " (nothing was sent; check the move or the stage limits in the station config)",
                port=port,
            )


class StageState(enum.Enum):
    """Controller-independent motion state."""

    IDLE = "idle"
    MOVING = "moving"
    HOMING = "homing"
    HOLD = "hold"          # feed hold: decelerating or stopped with motion pending
    ALARM = "alarm"        # locked: needs homing / unlock / reset
    OTHER = "other"        # sleep, check mode, door...


@dataclass(frozen=True)
class StageStatus:
    state: StageState
    x: float
    y: float
    raw: str = ""           # the controller's own status text, for logs and the GUI

    @property
    def position(self) -> tuple[float, float]:
        return (self.x, self.y)


# --------------------------------------------------------------------------------------------
# Interface
# --------------------------------------------------------------------------------------------
class Stage(abc.ABC):
    """Two-axis translator with an explicit lifecycle.

    Coordinates are millimetres in the stage frame. Every blocking call takes (or derives) a
    timeout; none waits forever.
    """

    # -- lifecycle -------------------------------------------------------------------------
    @abc.abstractmethod
    def open(self) -> None:
        """Connect, check the controller, and (as configured) home it."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the port; safe to call twice."""

    @property
    @abc.abstractmethod
    def is_open(self) -> bool: ...

    def __enter__(self) -> Stage:
        self.open()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- motion ----------------------------------------------------------------------------
    @property
    @abc.abstractmethod
    def limits(self) -> StageLimits:
        """Soft limits every move is checked against before anything is sent."""

    @abc.abstractmethod
    def home(self, timeout: float | None = None) -> None:
        """Run the homing cycle; afterwards positions are referenced."""

    @abc.abstractmethod
    def move_to(
        self, x: float, y: float, speed: float | None = None, *, wait: bool = True,
        timeout: float | None = None,
    ) -> None:
        """Move to (x, y) mm at ``speed`` mm/s (None: the configured maximum).

        With ``wait`` the call returns once the stage is idle at the target (timeout derived
        from distance, speed and acceleration when None); without it the move is queued and
        :meth:`wait_idle` waits for it.
        """

    def move_by(
        self, dx: float, dy: float, speed: float | None = None, *, wait: bool = True,
        timeout: float | None = None,
    ) -> None:
        """Relative move from the last commanded target (or the current position)."""
        x, y = self.target if self.target is not None else self.position()
        self.move_to(x + dx, y + dy, speed, wait=wait, timeout=timeout)

    @abc.abstractmethod
    def jog(self, dx: float, dy: float, speed: float | None = None) -> tuple[float, float]:
        """Start a relative manual move and return its target without waiting for it."""

    @abc.abstractmethod
    def jog_cancel(self) -> tuple[float, float]:
        """Stop a jog where it is (no position lost); returns where the stage stopped."""

    @property
    def target(self) -> tuple[float, float] | None:
        """Last commanded target, None when unknown (after a stop, reset or alarm)."""
        return None

    @abc.abstractmethod
    def position(self) -> tuple[float, float]:
        """Current position in mm (asks the controller)."""

    @abc.abstractmethod
    def status(self) -> StageStatus:
        """Current state and position (asks the controller)."""

    @abc.abstractmethod
    def wait_idle(self, timeout: float | None = None) -> tuple[float, float]:
        """Block until every queued move is done and the stage is idle at the last target."""

    @abc.abstractmethod
    def stop(self) -> None:
        """Stop as fast as the controller allows, keeping the position referenced if it can."""
