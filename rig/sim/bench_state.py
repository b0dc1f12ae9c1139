"""The one shared state of the simulated bench.

The stage emulator writes the stage position, the ring-light emulator writes which facets are
lit and fires the camera trigger; the simulated camera reads both and subscribes to the trigger.
Every access goes through one lock, so emulator threads and the camera thread see consistent
snapshots.

Trigger hooks are called with the illumination state index (int) from the ring-light emulator's
thread at the rising edge of the trigger pulse, while that state is lit. They must return
quickly (queue the work); an exception in a hook is logged and does not stop the emulator.
``last_trigger`` holds the full :class:`TriggerEvent` of the call in progress.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

NUM_FACETS = 12
NUM_STATES = 6
LEVEL_MAX = 255

TriggerHook = Callable[[int], None]
MotionHook = Callable[[tuple[float, float]], None]


def facets_of_state(state: int) -> tuple[int, int]:
    """State k lights facets k and k + 6 (azimuths 30k and 30k + 180 degrees)."""
    if not 0 <= state < NUM_STATES:
        raise ValueError(f"illumination state {state} not in 0..{NUM_STATES - 1}")
    return (state, state + NUM_STATES)


@dataclass(frozen=True)
class TriggerEvent:
    """One camera trigger pulse from the ring light."""

    state: int                              # illumination state lit for this exposure
    step: int                               # index within the armed sequence
    sequence_length: int
    facet_levels: tuple[int, ...]           # PWM 0..255 per facet as lit (0 = dark)
    stage_xy_mm: tuple[float, float]
    time: float                             # time.monotonic() of the rising edge
    pulse_s: float
    stage_moving: bool = False


@dataclass(frozen=True)
class BenchSnapshot:
    stage_xy_mm: tuple[float, float]
    stage_moving: bool
    facet_levels: tuple[int, ...]
    lit_state: int | None
    time: float


@dataclass
class BenchState:
    """Thread-safe shared bench state: stage position (mm, stage frame), lit facets, trigger."""

    stage_xy_mm: tuple[float, float] = (0.0, 0.0)
    stage_moving: bool = False
    facet_levels: tuple[int, ...] = (0,) * NUM_FACETS
    lit_state: int | None = None
    last_trigger: TriggerEvent | None = None
    trigger_count: int = 0
    # [start, end] of every stage motion (end None while moving), newest last: what tests
    # check exposures against
    motion_log: deque[list[float | None]] = field(default_factory=lambda: deque(maxlen=1000),
                                                  repr=False, compare=False)
    _lock: threading.RLock = field(default_factory=threading.RLock, repr=False, compare=False)
    _hooks: list[TriggerHook] = field(default_factory=list, repr=False, compare=False)
    _motion_hooks: list[MotionHook] = field(default_factory=list, repr=False, compare=False)

    # -- stage ------------------------------------------------------------------------------
    def set_stage(self, x: float, y: float, moving: bool = False) -> None:
        with self._lock:
            if bool(moving) != self.stage_moving:
                now = time.monotonic()
                if moving:
                    self.motion_log.append([now, None])
                elif self.motion_log:
                    self.motion_log[-1][1] = now
            self.stage_xy_mm = (float(x), float(y))
            self.stage_moving = bool(moving)

    def add_motion_hook(self, hook: MotionHook) -> Callable[[], None]:
        """Subscribe ``hook(target_xy_mm)``, called as each move starts with where it ends (the
        simulated camera renders ahead there); returns the unsubscriber."""
        with self._lock:
            self._motion_hooks.append(hook)

        def remove() -> None:
            with self._lock:
                if hook in self._motion_hooks:
                    self._motion_hooks.remove(hook)

        return remove

    def announce_target(self, x: float, y: float) -> None:
        """Called by the stage emulator when a move starts."""
        with self._lock:
            hooks = list(self._motion_hooks)
        for hook in hooks:
            try:
                hook((float(x), float(y)))
            except Exception:
                log.exception("motion hook %r failed", hook)

    # -- lights -----------------------------------------------------------------------------
    def set_lights(self, facet_levels: tuple[int, ...], lit_state: int | None) -> None:
        if len(facet_levels) != NUM_FACETS:
            raise ValueError(f"need {NUM_FACETS} facet levels, got {len(facet_levels)}")
        with self._lock:
            self.facet_levels = tuple(int(v) for v in facet_levels)
            self.lit_state = lit_state

    @property
    def facet_intensity(self) -> tuple[float, ...]:
        """Facet levels scaled to 0..1 (PWM duty), for the renderer."""
        with self._lock:
            return tuple(v / LEVEL_MAX for v in self.facet_levels)

    def snapshot(self) -> BenchSnapshot:
        with self._lock:
            return BenchSnapshot(self.stage_xy_mm, self.stage_moving, self.facet_levels,
                                 self.lit_state, time.monotonic())

    # -- trigger ----------------------------------------------------------------------------
    def add_trigger_hook(self, hook: TriggerHook) -> Callable[[], None]:
        """Subscribe ``hook(state_index)``; returns a function that unsubscribes it."""
        with self._lock:
            self._hooks.append(hook)

        def remove() -> None:
            self.remove_trigger_hook(hook)

        return remove

    def remove_trigger_hook(self, hook: TriggerHook) -> None:
        with self._lock:
            if hook in self._hooks:
                self._hooks.remove(hook)

    def fire_trigger(
        self, state: int, *, step: int = 0, sequence_length: int = 1, pulse_s: float = 0.0,
    ) -> TriggerEvent:
        """Called by the ring light at the trigger pulse: record it, then call every hook."""
        with self._lock:
            event = TriggerEvent(state, step, sequence_length, self.facet_levels,
                                 self.stage_xy_mm, time.monotonic(), pulse_s,
                                 self.stage_moving)
            self.last_trigger = event
            self.trigger_count += 1
            hooks = list(self._hooks)
        for hook in hooks:
            try:
                hook(state)
            except Exception:  # a broken subscriber must not kill the light emulator
                log.exception("trigger hook %r failed", hook)
        return event
