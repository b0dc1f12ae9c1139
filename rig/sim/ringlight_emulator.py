"""The ring-light controller on a pseudo-terminal, speaking protocol v1 like the firmware.

It mirrors firmware/ringlight/ringlight.ino command by command (same argument checks in the
same order, same replies and error codes) and runs the step timing in real time: at a trigger
the state's facets light, after ``settle`` the camera trigger line rises for ``pulse``, and
``hold`` after the rising edge the facets go dark. The lit facets go to the bench state, and
at each rising edge the bench's trigger hooks are called with the state index -- that is the
wire from the ring light's trigger output to the simulated camera's Line1.

Extra fault/stimulus: :meth:`RingLightEmulator.hardware_trigger` (an edge on the trigger input).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from rig import ringlight_protocol as rp
from rig.ringlight_protocol import Command, ErrorCode, Mode
from rig.sim.bench_state import BenchState
from rig.sim.pty_device import PtyDevice

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FiredStep:
    time: float        # time.monotonic() of the trigger rising edge
    step: int
    state: int
    source: str        # "software" | "hardware"


class _Reject(Exception):
    def __init__(self, code: ErrorCode, detail: str = "") -> None:
        super().__init__(code, detail)
        self.code = code
        self.detail = detail


class RingLightEmulator(PtyDevice):
    name = "ringlight"

    def __init__(
        self, bench: BenchState | None = None, *, reset_on_open: bool = True,
        boot_delay_s: float = 0.05, seed: int = 0, time_scale: float = 1.0,
        alias: str | None = None,
    ) -> None:
        super().__init__(reset_on_open=reset_on_open, boot_delay_s=boot_delay_s, seed=seed,
                         alias=alias)
        self.bench = bench
        self.time_scale = time_scale
        self.fired: list[FiredStep] = []
        self.trigger_output = False
        self._line = bytearray()
        self._overflow = False
        self._bad_char = False
        self._reset_state()
        self._triggers = 0
        self._overruns = 0

    def _reset_state(self) -> None:
        self.levels = [rp.DEFAULT_LEVEL] * rp.NUM_FACETS
        self.settle_us = rp.DEFAULT_SETTLE_US
        self.pulse_us = rp.DEFAULT_PULSE_US
        self.hold_us = rp.DEFAULT_HOLD_US
        self.mode = Mode.IDLE
        self.lit_state: int | None = None
        self.sequence: tuple[int, ...] = ()
        self.step = 0
        self._phase: str | None = None
        self._phase_due = 0.0
        self._t_pulse = 0.0
        self._fire_source = "software"
        self.trigger_output = False
        self._run_period_us: int | None = None  # RUN in progress: one step per period
        self._step_start = 0.0

    # -- public -----------------------------------------------------------------------------
    def hardware_trigger(self) -> None:
        """A rising edge on the trigger input (from a PLC or encoder)."""
        with self._lock:
            now = time.monotonic()
            if self.mode == Mode.ARMED:
                step, state = self._start_step(now, "hardware")
                self._emit(rp.format_event(rp.Event.TRIG, step, state))
            elif self.mode == Mode.BUSY:
                self._overruns += 1
                self._emit(rp.format_event(rp.Event.OVERRUN, self.step))
        self._wakeup()

    def status(self) -> rp.LightStatus:
        with self._lock:
            return self._status()

    def _extra_faults(self) -> dict[str, Callable[..., None]]:
        return {"hardware_trigger": self.hardware_trigger}

    # -- PtyDevice hooks --------------------------------------------------------------------
    def _on_power_on(self, now: float) -> None:
        self._triggers = 0
        self._overruns = 0

    def _on_boot(self, now: float) -> None:
        self._reset_state()
        self._triggers = 0
        self._overruns = 0
        self._line.clear()
        self._overflow = self._bad_char = False
        self._apply_lights()
        self._emit(rp.format_event(rp.Event.READY, rp.DEVICE_NAME, rp.FIRMWARE_VERSION,
                                   rp.PROTOCOL_VERSION))

    def _on_bytes(self, data: bytes, now: float) -> None:
        for b in data:
            if b in (0x0D, 0x0A):
                if self._overflow:
                    self._reply_err(ErrorCode.LINE_TOO_LONG,
                                    f"line longer than {rp.MAX_LINE - 1} characters")
                elif self._bad_char:
                    self._reply_err(ErrorCode.BAD_CHARACTER, "non-printable byte in line")
                elif self._line:
                    text = self._line.decode("ascii")
                    self.received_lines.append(text)
                    self._execute(text.split(), now)
                self._line.clear()
                self._overflow = self._bad_char = False
            elif b == 0x09:
                self._append(0x20)
            elif not 0x20 <= b <= 0x7E:
                self._bad_char = True
            else:
                self._append(b)

    def _append(self, b: int) -> None:
        if len(self._line) < rp.MAX_LINE - 1:
            self._line.append(ord(chr(b).upper()))
        else:
            self._overflow = True

    def _on_tick(self, now: float) -> float | None:
        while self._phase is not None and now >= self._phase_due:
            self._advance_phase()
        return self._phase_due if self._phase is not None else None

    # -- step timing ------------------------------------------------------------------------
    def _scaled(self, us: int) -> float:
        return us * 1e-6 * self.time_scale

    def _start_step(self, now: float, source: str) -> tuple[int, int]:
        step = self.step
        state = self.sequence[step]
        self.step += 1
        self._triggers += 1
        self.mode = Mode.BUSY
        self.lit_state = state
        self._apply_lights()
        self._step_start = now
        self._t_pulse = now + self._scaled(self.settle_us)
        self._phase = "settle"
        self._phase_due = self._t_pulse
        self._fire_source = source
        if self.settle_us == 0:
            self._advance_phase()
        return step, state

    def _advance_phase(self) -> None:
        if self._phase == "settle":
            self.trigger_output = True
            self._phase = "pulse"
            self._phase_due = self._t_pulse + self._scaled(self.pulse_us)
            step, state = self.step - 1, self.sequence[self.step - 1]
            self.fired.append(FiredStep(self._t_pulse, step, state, self._fire_source))
            if self.bench is not None:       # the trigger wire to the camera
                self.bench.fire_trigger(state, step=step, sequence_length=len(self.sequence),
                                        pulse_s=self._scaled(self.pulse_us))
        elif self._phase == "pulse":
            self.trigger_output = False
            self._phase = "hold"
            self._phase_due = self._t_pulse + self._scaled(self.hold_us)
        elif self._phase == "hold":
            self._finish_step()
        elif self._phase == "wait":
            self._start_step(self._phase_due, "run")

    def _finish_step(self) -> None:
        self._phase = None
        self.trigger_output = False
        self.lit_state = None
        self._apply_lights()
        if self.step >= len(self.sequence):
            self._run_period_us = None
            self.mode = Mode.IDLE
            self._emit(rp.format_event(rp.Event.DONE, len(self.sequence)))
        elif self._run_period_us is not None:  # stays BUSY, dark, until the run's next step
            self._phase = "wait"
            self._phase_due = self._step_start + self._scaled(self._run_period_us)
        else:
            self.mode = Mode.ARMED

    def _abort(self) -> None:
        self._run_period_us = None
        self._phase = None
        self.trigger_output = False
        self.lit_state = None
        self.mode = Mode.IDLE
        self._apply_lights()

    def _apply_lights(self) -> None:
        levels = [0] * rp.NUM_FACETS
        if self.lit_state is not None:
            for f in rp.facets_of_state(self.lit_state):
                levels[f] = self.levels[f]
        if self.bench is not None:
            self.bench.set_lights(tuple(levels), self.lit_state)

    def _status(self) -> rp.LightStatus:
        return rp.LightStatus(self.mode, self.lit_state, self.step, len(self.sequence),
                              self._triggers, self._overruns)

    # -- commands (same checks, same order as the firmware) ---------------------------------
    def _reply_err(self, code: ErrorCode, detail: str = "") -> None:
        self._emit(rp.format_err(code, detail))

    def _execute(self, words: list[str], now: float) -> None:
        name, args = words[0], words[1:]
        try:
            if name not in Command.__members__:
                raise _Reject(ErrorCode.UNKNOWN_COMMAND, name[:20])
            if len(args) > rp.MAX_SEQUENCE + 2:        # the firmware's argv[] size
                raise _Reject(ErrorCode.BAD_ARGUMENT, "wrong number of arguments")
            handler = getattr(self, f"_cmd_{name.lower()}")
            handler(args, now)
        except _Reject as r:
            self._reply_err(r.code, r.detail)

    @staticmethod
    def _nargs(args: list[str], *allowed: int) -> None:
        if len(args) not in allowed:
            raise _Reject(ErrorCode.BAD_ARGUMENT, "wrong number of arguments")

    @staticmethod
    def _uint(token: str, lo: int, hi: int, what: str) -> int:
        value = rp.parse_uint(token)
        if value is None:
            raise _Reject(ErrorCode.BAD_ARGUMENT, f"{what} is not a number")
        if not lo <= value <= hi:
            raise _Reject(ErrorCode.OUT_OF_RANGE, f"{what} must be {lo}..{hi}")
        return value

    def _not_busy(self) -> None:
        if self.mode == Mode.BUSY:
            raise _Reject(ErrorCode.BUSY, "step in progress")

    def _cmd_id(self, args: list[str], now: float) -> None:
        self._nargs(args, 0)
        self._emit(rp.format_identity())

    def _cmd_status(self, args: list[str], now: float) -> None:
        self._nargs(args, 0)
        self._emit(rp.format_status(self._status()))

    def _cmd_level(self, args: list[str], now: float) -> None:
        self._nargs(args, 1, 2)
        facet = self._uint(args[0], 0, rp.NUM_FACETS - 1, "facet")
        if len(args) == 2:
            level = self._uint(args[1], 0, rp.LEVEL_MAX, "level")
            self._not_busy()
            self.levels[facet] = level
            self._apply_lights()
        self._emit(rp.format_ok(Command.LEVEL, facet, self.levels[facet]))

    def _cmd_levels(self, args: list[str], now: float) -> None:
        self._nargs(args, 0, rp.NUM_FACETS)
        if args:
            values = [self._uint(a, 0, rp.LEVEL_MAX, "level") for a in args]
            self._not_busy()
            self.levels = values
            self._apply_lights()
        self._emit(rp.format_ok(Command.LEVELS, *self.levels))

    def _cmd_state(self, args: list[str], now: float) -> None:
        self._nargs(args, 1)
        state = self._uint(args[0], 0, rp.NUM_STATES - 1, "state")
        self._not_busy()
        if self.mode == Mode.ARMED:
            raise _Reject(ErrorCode.ARMED, "sequence armed")
        self.mode = Mode.LIT
        self.lit_state = state
        self._apply_lights()
        self._emit(rp.format_ok(Command.STATE, state))

    def _cmd_off(self, args: list[str], now: float) -> None:
        self._nargs(args, 0)
        self._abort()
        self.sequence = ()
        self.step = 0
        self._emit(rp.format_ok(Command.OFF))

    def _cmd_arm(self, args: list[str], now: float) -> None:
        if not args:
            raise _Reject(ErrorCode.BAD_ARGUMENT, "wrong number of arguments")
        n = self._uint(args[0], 1, rp.MAX_SEQUENCE, "sequence length")
        if len(args) == 1:
            seq = rp.default_sequence(n)
        elif len(args) == 1 + n:
            seq = tuple(self._uint(a, 0, rp.NUM_STATES - 1, "state") for a in args[1:])
        else:
            raise _Reject(ErrorCode.BAD_ARGUMENT, "wrong number of arguments")
        self._not_busy()
        self.lit_state = None
        self.sequence = seq
        self.step = 0
        self.mode = Mode.ARMED
        self._apply_lights()
        self._emit(rp.format_ok(Command.ARM, n, *seq))

    def _cmd_trig(self, args: list[str], now: float) -> None:
        self._nargs(args, 0)
        self._not_busy()
        if self.mode != Mode.ARMED:
            raise _Reject(ErrorCode.NOT_ARMED, "no sequence armed")
        step, state = self._start_step(now, "software")
        self._emit(rp.format_ok(Command.TRIG, step, state))

    def _cmd_run(self, args: list[str], now: float) -> None:
        self._nargs(args, 1)
        period = rp.round_to_tick(self._uint(args[0], 1, rp.PERIOD_MAX_US, "period"))
        self._not_busy()
        if self.mode != Mode.ARMED:
            raise _Reject(ErrorCode.NOT_ARMED, "no sequence armed")
        if period < self.settle_us + self.hold_us:
            raise _Reject(ErrorCode.OUT_OF_RANGE, "period shorter than settle + hold")
        left = len(self.sequence) - self.step
        self._run_period_us = period
        self._start_step(now, "run")
        self._emit(rp.format_ok(Command.RUN, left, period))

    def _cmd_disarm(self, args: list[str], now: float) -> None:
        self._nargs(args, 0)
        if self.mode in (Mode.ARMED, Mode.BUSY):
            self._abort()
        self.sequence = ()
        self.step = 0
        self._emit(rp.format_ok(Command.DISARM))

    def _cmd_timing(self, args: list[str], now: float) -> None:
        self._nargs(args, 0, 3)
        if args:
            settle = self._uint(args[0], 0, rp.SETTLE_MAX_US, "settle")
            pulse = self._uint(args[1], 1, rp.PULSE_MAX_US, "pulse")
            hold = self._uint(args[2], pulse, rp.HOLD_MAX_US, "hold")
            self._not_busy()
            self.settle_us = rp.round_to_tick(settle)
            self.pulse_us = rp.round_to_tick(pulse)
            self.hold_us = rp.round_to_tick(hold)
        self._emit(rp.format_ok(Command.TIMING, self.settle_us, self.pulse_us, self.hold_us))
