"""A GRBL 1.1 controller on a pseudo-terminal: the same bytes a real board sends.

Covered as far as the stage driver (and a human on a terminal) uses it: the greeting, ``ok`` /
``error:N`` / ``ALARM:N`` with GRBL's codes, ``[MSG:..]`` feedback, status reports in the 1.1
format ($10 selects MPos or WPos, WCO and Ov refreshed like the firmware does), ``$$``, ``$I``,
``$#``, ``$G``, ``$H`` homing (with the homing lock at power-up), ``$X``, settings writes,
G0/G1/G4/G10 L2/L20/G20/G21/G53/G54/G90/G91/G92, soft limits, the 128-byte RX buffer and the
15-block planner, and the real-time commands ``?`` ``!`` ``~`` and Ctrl-X.

Motion takes real time: every block is a rest-to-rest trapezoid limited by the per-axis max
rates and accelerations (GRBL blends junctions; stopping at each one is slightly slower, which
keeps driver timeouts honest). ``time_scale`` < 1 speeds the physics up for tests.

The physical position is tracked separately from what GRBL believes: at power-up the board
reports MPos 0 wherever the stage is, and only homing makes the two agree, exactly like the
real machine. The bench state gets the physical position in the stage (work) frame.

Extra fault: :meth:`GrblEmulator.raise_alarm` (hard limit by default).
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from rig import grbl_protocol as gp
from rig.sim.bench_state import BenchState
from rig.sim.pty_device import PtyDevice

log = logging.getLogger(__name__)

Vec = tuple[float, float, float]
_ZERO: Vec = (0.0, 0.0, 0.0)


def _add(a: Vec, b: Vec) -> Vec:
    return (a[0] + b[0], a[1] + b[1], a[2] + b[2])


def _sub(a: Vec, b: Vec) -> Vec:
    return (a[0] - b[0], a[1] - b[1], a[2] - b[2])


def _scale(a: Vec, s: float) -> Vec:
    return (a[0] * s, a[1] * s, a[2] * s)


def _norm(a: Vec) -> float:
    return math.sqrt(a[0] ** 2 + a[1] ** 2 + a[2] ** 2)


@dataclass
class GrblEmulatorConfig:
    """Machine and firmware parameters (the '$' settings a real board keeps in EEPROM)."""

    version: str = "1.1h"
    build_date: str = "20190830"
    travel_mm: tuple[float, float] = (200.0, 250.0)            # $130, $131
    max_rate_mm_min: tuple[float, float] = (3000.0, 3000.0)    # $110, $111
    accel_mm_s2: tuple[float, float] = (500.0, 500.0)          # $120, $121
    homing_enabled: bool = True                                 # $22
    homing_dir_mask: int = 3                                    # $23: home to the - end
    homing_feed_mm_min: float = 300.0                           # $24
    homing_seek_mm_min: float = 3000.0                          # $25
    homing_pulloff_mm: float = 1.0                              # $27
    soft_limits: bool = True                                    # $20
    status_mask: int = 1                                        # $10: 1 = MPos, 0 = WPos
    report_inches: bool = False                                 # $13
    g54_mm: tuple[float, float] | None = None   # None: -travel, so the work frame is 0..travel
    start_xy_mm: tuple[float, float] | None = None   # physical start (work frame); None: centre
    rx_buffer_size: int = gp.RX_BUFFER_SIZE
    planner_blocks: int = gp.PLANNER_BLOCKS
    time_scale: float = 1.0                     # < 1: physics runs faster than real time

    @classmethod
    def for_work_limits(
        cls, x_limits: tuple[float, float], y_limits: tuple[float, float], *,
        max_speed_mm_s: float, acceleration_mm_s2: float, **kw: object,
    ) -> GrblEmulatorConfig:
        """A machine whose travel is exactly the given work-frame limits (G54 maps them)."""
        tx, ty = x_limits[1] - x_limits[0], y_limits[1] - y_limits[0]
        return cls(
            travel_mm=(tx, ty), max_rate_mm_min=(max_speed_mm_s * 60.0,) * 2,
            accel_mm_s2=(acceleration_mm_s2,) * 2, g54_mm=(-tx - x_limits[0], -ty - y_limits[0]),
            **kw,  # type: ignore[arg-type]
        )


@dataclass
class _Block:
    target: Vec           # physical, homed-machine frame
    feed_mm_min: float    # for FS: programmed rate
    rapid: bool


@dataclass
class _Trapezoid:
    """Rest-to-rest straight move (times already scaled)."""

    start: Vec
    end: Vec
    v: float
    a: float
    t0: float
    feed_report: float
    unit: Vec = field(init=False)
    length: float = field(init=False)
    t_acc: float = field(init=False)
    v_peak: float = field(init=False)
    t_total: float = field(init=False)

    def __post_init__(self) -> None:
        d = _sub(self.end, self.start)
        self.length = _norm(d)
        self.unit = _scale(d, 1.0 / self.length) if self.length > 0 else _ZERO
        if self.length >= self.v * self.v / self.a:
            self.v_peak = self.v
            self.t_acc = self.v / self.a
            self.t_total = self.length / self.v + self.v / self.a
        else:
            self.v_peak = math.sqrt(self.length * self.a)
            self.t_acc = self.v_peak / self.a
            self.t_total = 2.0 * self.t_acc

    @property
    def t_end(self) -> float:
        return self.t0 + self.t_total

    def s(self, t: float) -> float:
        tau = min(max(t - self.t0, 0.0), self.t_total)
        d_acc = 0.5 * self.a * self.t_acc ** 2
        if tau <= self.t_acc:
            return 0.5 * self.a * tau * tau
        if tau <= self.t_total - self.t_acc:
            return d_acc + self.v_peak * (tau - self.t_acc)
        rem = self.t_total - tau
        return self.length - 0.5 * self.a * rem * rem

    def speed(self, t: float) -> float:
        tau = min(max(t - self.t0, 0.0), self.t_total)
        return min(self.a * tau, self.v_peak, self.a * (self.t_total - tau))

    def pos(self, t: float) -> Vec:
        return _add(self.start, _scale(self.unit, self.s(t)))


@dataclass
class _Decel:
    """Feed hold: brake from ``v0`` along ``unit`` to rest."""

    start: Vec
    unit: Vec
    v0: float
    a: float
    t0: float

    @property
    def t_end(self) -> float:
        return self.t0 + self.v0 / self.a

    def pos(self, t: float) -> Vec:
        tau = min(max(t - self.t0, 0.0), self.v0 / self.a)
        return _add(self.start, _scale(self.unit, self.v0 * tau - 0.5 * self.a * tau * tau))

    def speed(self, t: float) -> float:
        return max(self.v0 - self.a * max(t - self.t0, 0.0), 0.0)


class _GcodeError(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)")
_G_GROUPS = {
    0: "motion", 10: "motion", 800: "motion", 900: "distance", 910: "distance",
    200: "units", 210: "units", 170: "plane", 180: "plane", 190: "plane", 940: "feedmode",
    540: "wcs", 40: "nonmodal", 100: "nonmodal", 530: "nonmodal", 920: "nonmodal",
    921: "nonmodal",
}
_M_OK = {0, 1, 2, 30, 3, 4, 5, 7, 8, 9}

# modes
_IDLE, _RUN, _HOLD_DECEL, _HOLD, _HOME, _ALARM = "idle", "run", "hold1", "hold0", "home", "alarm"
_JOG, _JOG_CANCEL = "jog", "jog-cancel"  # jogging; decelerating after 0x85 (still "Jog")
_MOVING = (_RUN, _HOLD_DECEL, _HOME, _JOG, _JOG_CANCEL)
CMD_JOG_CANCEL = 0x85


class GrblEmulator(PtyDevice):
    """GRBL 1.1 on a pseudo-terminal. ``bench`` (optional) receives the stage position."""

    name = "grbl"

    def __init__(
        self, config: GrblEmulatorConfig | None = None, bench: BenchState | None = None, *,
        reset_on_open: bool = True, boot_delay_s: float = 0.05, seed: int = 0,
        alias: str | None = None,
    ) -> None:
        super().__init__(reset_on_open=reset_on_open, boot_delay_s=boot_delay_s, seed=seed,
                         alias=alias)
        self.config = cfg = config or GrblEmulatorConfig()
        self.bench = bench
        tx, ty = cfg.travel_mm
        self._settings: dict[int, float] = {
            0: 10, 1: 25, 2: 0, 3: 0, 4: 0, 5: 0, 6: 0, 10: cfg.status_mask, 11: 0.010,
            12: 0.002, 13: int(cfg.report_inches), 20: int(cfg.soft_limits), 21: 0,
            22: int(cfg.homing_enabled), 23: cfg.homing_dir_mask, 24: cfg.homing_feed_mm_min,
            25: cfg.homing_seek_mm_min, 26: 250, 27: cfg.homing_pulloff_mm, 30: 1000, 31: 0,
            32: 0, 100: 250.0, 101: 250.0, 102: 250.0, 110: cfg.max_rate_mm_min[0],
            111: cfg.max_rate_mm_min[1], 112: 500.0, 120: cfg.accel_mm_s2[0],
            121: cfg.accel_mm_s2[1], 122: 10.0, 130: tx, 131: ty, 132: 200.0,
        }
        g54 = cfg.g54_mm if cfg.g54_mm is not None else (-tx, -ty)
        self._g54: Vec = (g54[0], g54[1], 0.0)
        self._bench_origin: Vec = self._g54       # physical frame -> bench (stage) frame
        start = cfg.start_xy_mm if cfg.start_xy_mm is not None else (tx / 2.0, ty / 2.0)
        self._phys: Vec = _add((start[0], start[1], 0.0), self._g54)
        self._err: Vec = _ZERO                    # reported MPos = phys + err
        self._g92: Vec = _ZERO
        self._gc_pos: Vec = _ZERO                 # parser position (machine frame)
        self._absolute = True
        self._inches = False
        self._feed = 0.0                          # mm/min, 0 = undefined
        self._motion_mode = 0                     # 0 = G0, 10 = G1, 800 = G80
        self._mode = _IDLE
        self._critical = False
        self._alarm_pause_until: float | None = None  # inside the 500 ms after an ALARM line
        self._alarm_code = 0
        self._late_ok = False  # the line that tripped a soft limit is acknowledged after reset
        self.homed = False
        self._rx = bytearray()
        self.rx_overflows = 0
        self._planner: deque[_Block] = deque()
        self._motion: _Trapezoid | None = None
        self._decel: _Decel | None = None
        self._t_cursor: float | None = None       # when the next block may start
        self._home: _Trapezoid | None = None
        self._home_extra_end = 0.0
        self._dwell_until: float | None = None
        self._dwell_waiting = False
        self._dwell_s = 0.0
        self._status_requested = False
        self.pins = ""  # input pins reported as Pn: (e.g. "X" while the x limit switch is pressed)
        self._wco_counter = 0
        self._ovr_counter = 0

    # -- public inspection ------------------------------------------------------------------
    @property
    def state(self) -> str:
        """The state word of the next status report ('Idle', 'Run', 'Hold:0', 'Alarm'...)."""
        with self._lock:
            return self._state_word()

    @property
    def physical_position(self) -> tuple[float, float]:
        """Where the stage really is, in the stage (work) frame -- what the bench shows."""
        with self._lock:
            p = _sub(self._phys, self._bench_origin)
            return (p[0], p[1])

    @property
    def machine_position(self) -> tuple[float, float]:
        with self._lock:
            m = _add(self._phys, self._err)
            return (m[0], m[1])

    def setting(self, number: int) -> float:
        with self._lock:
            return self._settings[number]

    # -- faults -----------------------------------------------------------------------------
    def raise_alarm(self, code: int = 1, pins: str = "") -> None:
        """Trip an alarm now: motion stops dead (hard-limit style). Codes 1 and 2 are critical
        (only a soft reset continues); others reset the firmware like a failed homing does.
        `pins` ("X", "XY"...) are the limit switches left pressed, reported as Pn: until the
        next homing cycle pulls off them."""
        with self._lock:
            self.pins = pins
            self._trip_alarm(code, time.monotonic())
        self._wakeup()

    def _extra_faults(self) -> dict[str, Callable[..., None]]:
        return {"alarm": self.raise_alarm}

    # -- PtyDevice hooks --------------------------------------------------------------------
    def _on_boot(self, now: float) -> None:
        """Power-up or DTR reset: MPos restarts at 0 wherever the stage is; homing lock."""
        self._advance(now)
        self._stop_motion(now)
        self._err = _scale(self._phys, -1.0)
        self.homed = False
        self._critical = False
        self._alarm_pause_until = None
        self._late_ok = False
        self._rx.clear()
        self._reset_parser()
        self._mode = _ALARM if self._settings[22] else _IDLE
        self._status_requested = False
        self._emit_greeting()

    def _on_bytes(self, data: bytes, now: float) -> None:
        self._advance(now)
        for b in data:
            if self._alarm_pause_until is not None:
                continue  # inside report_alarm_message's 500 ms delay: bytes are not handled
            if self._critical:                     # the critical loop: only a reset gets out
                if b == 0x18:
                    self._critical_reset(now)
                continue
            if b == 0x18:
                self._soft_reset(now)
            elif b == 0x3F:                        # '?'
                self._status_requested = True
            elif b == 0x21:                        # '!'
                self._feed_hold(now)
            elif b == 0x7E:                        # '~'
                self._cycle_start(now)
            elif b == CMD_JOG_CANCEL:
                self._jog_cancel(now)
            elif b >= 0x80:
                pass                               # override commands: not modelled
            elif len(self._rx) >= self.config.rx_buffer_size - 1:
                self.rx_overflows += 1             # a real board loses these bytes too
            else:
                self._rx.append(b)

    def _on_tick(self, now: float) -> float | None:
        if self._alarm_pause_until is not None:
            if now < self._alarm_pause_until:
                return self._alarm_pause_until
            self._alarm_pause_until = None
            self._after_alarm_report()
        self._advance(now)
        self._process_lines(now)
        self._advance(now)
        if self._status_requested and self._mode != _HOME:  # limits.c services no '?' while
            self._status_requested = False                  # homing: one report afterwards
            self._emit(self._status_text())
        self._publish()
        if self._mode in _MOVING or self._dwell_until is not None:
            return now + 0.005
        return None

    # -- motion -----------------------------------------------------------------------------
    def _advance(self, now: float) -> None:
        while True:
            if self._mode in (_RUN, _JOG):
                if self._motion is None:
                    if not self._planner:
                        self._mode = _IDLE
                        self._t_cursor = None
                        continue
                    start_t = self._t_cursor if self._t_cursor is not None else now
                    self._motion = self._plan(self._planner[0], start_t)
                if now >= self._motion.t_end:
                    self._phys = self._motion.end
                    self._t_cursor = self._motion.t_end
                    self._motion = None
                    self._planner.popleft()
                    continue
                self._phys = self._motion.pos(now)
            elif self._mode in (_HOLD_DECEL, _JOG_CANCEL) and self._decel is not None:
                if now >= self._decel.t_end:
                    self._phys = self._decel.pos(self._decel.t_end)
                    self._decel = None
                    if self._mode == _HOLD_DECEL:
                        self._mode = _HOLD
                    else:  # protocol.c: plan_reset, gc_sync_position, then Idle
                        self._planner.clear()
                        self._gc_pos = _add(self._phys, self._err)
                        self._mode = _IDLE
                else:
                    self._phys = self._decel.pos(now)
            elif self._mode == _HOME and self._home is not None:
                if now >= self._home_extra_end:
                    self._finish_homing()
                else:
                    self._phys = self._home.pos(now)
            if self._dwell_until is not None and self._mode == _IDLE and now >= self._dwell_until:
                self._dwell_until = None
                self._emit("ok")
            return

    def _plan(self, block: _Block, t0: float) -> _Trapezoid:
        d = _sub(block.target, self._phys)
        length = _norm(d)
        unit = _scale(d, 1.0 / length) if length > 0 else (1.0, 0.0, 0.0)
        rates = (self._settings[110] / 60.0, self._settings[111] / 60.0,
                 self._settings[112] / 60.0)
        accels = (self._settings[120], self._settings[121], self._settings[122])
        feed = math.inf if block.rapid else block.feed_mm_min / 60.0
        v, a = gp.axis_limited(unit, feed, rates, accels)
        ts = self.config.time_scale
        if self.bench is not None:  # where this move ends, exactly as _publish will report it
            end = _sub(block.target, self._bench_origin)
            self.bench.announce_target(end[0], end[1])
        return _Trapezoid(self._phys, block.target, v / ts, a / ts ** 2, t0, v * 60.0)

    def _stop_motion(self, now: float) -> None:
        """Halt dead where the stage is now and forget queued motion."""
        self._advance(now)
        self._motion = None
        self._decel = None
        self._home = None
        self._planner.clear()
        self._t_cursor = None
        self._dwell_until = None
        self._gc_pos = _add(self._phys, self._err)

    def _jog_cancel(self, now: float) -> None:
        """0x85 while jogging: decelerate to a stop, then drop every queued jog (GRBL 1.1)."""
        if self._mode != _JOG:
            return
        self._advance(now)
        if self._motion is not None:
            m = self._motion
            self._decel = _Decel(m.pos(now), m.unit, m.speed(now), m.a, now)
            self._motion = None
            self._t_cursor = None
            self._planner.clear()
            self._mode = _JOG_CANCEL
        else:
            self._planner.clear()
            self._gc_pos = _add(self._phys, self._err)
            self._mode = _IDLE

    def _feed_hold(self, now: float) -> None:
        if self._mode == _JOG:  # a feed hold cancels a jog (protocol.c, EXEC_FEED_HOLD)
            self._jog_cancel(now)
            return
        if self._mode == _RUN and self._motion is not None:
            m = self._motion
            self._decel = _Decel(m.pos(now), m.unit, m.speed(now), m.a, now)
            self._motion = None
            self._t_cursor = None
            self._mode = _HOLD_DECEL
        elif self._mode in (_RUN, _IDLE):
            self._mode = _HOLD

    def _cycle_start(self, now: float) -> None:
        if self._mode == _HOLD:
            self._mode = _RUN if self._planner else _IDLE
            self._t_cursor = None

    def _finish_homing(self) -> None:
        self.pins = ""
        tx, ty = self._settings[130], self._settings[131]
        pull = self._settings[27]
        mask = int(self._settings[23])
        home = [0.0, 0.0, 0.0]
        for i, t in enumerate((tx, ty)):
            home[i] = (-t + pull) if mask & (1 << i) else -pull
        self._phys = (home[0], home[1], 0.0)
        self._err = _ZERO
        self._home = None
        self.homed = True
        self._mode = _IDLE
        self._gc_pos = self._phys
        self._emit("ok")

    def _start_homing(self, now: float) -> None:
        tx, ty = self._settings[130], self._settings[131]
        mask = int(self._settings[23])
        switch = ((-tx if mask & 1 else 0.0), (-ty if mask & 2 else 0.0), self._phys[2])
        seek = self._settings[25] / 60.0
        accel = min(self._settings[120], self._settings[121])
        ts = self.config.time_scale
        if _norm(_sub(switch, self._phys)) < 1e-9:
            switch = _add(switch, (1e-6, 0.0, 0.0))
        self._home = _Trapezoid(self._phys, switch, seek / ts, accel / ts ** 2, now, seek * 60)
        # locate (slow approach) and pull-off: a few pull-off lengths at the feed rate
        locate = 3.0 * self._settings[27] / max(self._settings[24] / 60.0, 1e-6)
        self._home_extra_end = self._home.t_end + locate * ts
        self._mode = _HOME

    # -- alarms and resets ------------------------------------------------------------------
    def _trip_alarm(self, code: int, now: float) -> None:
        self._stop_motion(now)
        if code in (1, 3, 6, 7, 8, 9, 10):
            self.homed = False
        self._mode = _ALARM
        self._emit(f"ALARM:{code}")
        # report.c waits 500 ms after every ALARM line; protocol.c then either enters the
        # critical loop (hard/soft limit: "[MSG:Reset to continue]", any reset sent so far is
        # cleared, nothing is answered until a new Ctrl-X) or restarts the firmware
        self._alarm_pause_until = now + gp.ALARM_REPORT_DELAY_S * self.config.time_scale
        self._alarm_code = code
        self._status_requested = False

    def _after_alarm_report(self) -> None:
        if self._alarm_code in gp.CRITICAL_ALARMS:
            self._critical = True
            self._emit(f"[MSG:{gp.MSG_RESET_TO_CONTINUE}]")
        else:                                      # the firmware resets itself
            self._rx.clear()
            self._reset_parser()
            self._emit_greeting()

    def _critical_reset(self, now: float) -> None:
        """The Ctrl-X that ends the critical loop: the line that tripped gets its late `ok`
        (its parser call returns), then the firmware restarts, still in alarm."""
        self._critical = False
        if self._late_ok:
            self._late_ok = False
            self._emit("ok")
        self._soft_reset(now)

    def _soft_reset(self, now: float) -> None:
        self._advance(now)
        alarm = None
        if self._mode == _HOME:
            alarm = 6
        elif self._mode in (_RUN, _HOLD_DECEL, _JOG, _JOG_CANCEL) and (self._motion
                                                                        or self._decel):
            alarm = 3
        self._stop_motion(now)
        self._rx.clear()
        self._reset_parser()
        self._critical = False
        self._status_requested = False
        if alarm is not None:  # reset in motion or homing: ALARM, its 500 ms, then the banner
            self.homed = False
            self._mode = _ALARM
            self._emit(f"ALARM:{alarm}")
            self._alarm_pause_until = now + gp.ALARM_REPORT_DELAY_S * self.config.time_scale
            self._alarm_code = alarm
            return
        if self._mode != _ALARM:
            self._mode = _IDLE                     # a completed feed hold keeps its position
        self._emit_greeting()

    def _emit_greeting(self) -> None:
        self._emit_raw(b"\r\n")
        self._emit(gp.GREETING_TEMPLATE.format(version=self.config.version))
        if self._mode == _ALARM:
            self._emit(f"[MSG:{gp.MSG_UNLOCK_HINT}]")
        self._wco_counter = 0
        self._ovr_counter = 0

    def _reset_parser(self) -> None:
        self._g92 = _ZERO
        self._absolute = True
        self._inches = False
        self._feed = 0.0
        self._motion_mode = 0
        self._dwell_until = None
        self._dwell_waiting = False
        self._gc_pos = _add(self._phys, self._err)

    # -- status -----------------------------------------------------------------------------
    def _state_word(self) -> str:
        return {
            _IDLE: "Idle", _RUN: "Run", _HOLD_DECEL: "Hold:1", _HOLD: "Hold:0",
            _HOME: "Home", _ALARM: "Alarm", _JOG: "Jog", _JOG_CANCEL: "Jog",
        }[self._mode]

    def _wco(self) -> Vec:
        return _add(self._g54, self._g92)

    def _status_text(self) -> str:
        mode = self._mode
        state = {
            _IDLE: gp.MachineState.IDLE, _RUN: gp.MachineState.RUN,
            _HOLD_DECEL: gp.MachineState.HOLD, _HOLD: gp.MachineState.HOLD,
            _HOME: gp.MachineState.HOME, _ALARM: gp.MachineState.ALARM,
            _JOG: gp.MachineState.JOG, _JOG_CANCEL: gp.MachineState.JOG,
        }[mode]
        sub = 1 if mode == _HOLD_DECEL else 0 if mode == _HOLD else None
        mpos = _add(self._phys, self._err)
        unit = 1 / 25.4 if self._settings[13] else 1.0
        now = time.monotonic()
        moving = self._motion or self._decel or self._home
        speed = moving.speed(now) * self.config.time_scale * 60.0 if moving else 0.0
        busy = mode in (*_MOVING, _HOLD)
        wco = None
        ovr = None
        if self._wco_counter > 0:
            self._wco_counter -= 1
        else:
            self._wco_counter = 29 if busy else 9
            if self._ovr_counter == 0:
                self._ovr_counter = 1
            wco = _scale(self._wco(), unit)
        if self._ovr_counter > 0:
            self._ovr_counter -= 1
        elif wco is None:
            self._ovr_counter = 19 if busy else 9
            ovr = (100, 100, 100)
        buffer = None
        if int(self._settings[10]) & 2:
            buffer = (self.config.planner_blocks - len(self._planner),  # serial.c: free bytes
                      self.config.rx_buffer_size - len(self._rx))        # of the ring, 128 empty
        kw: dict = {"mpos": _scale(mpos, unit)} if int(self._settings[10]) & 1 else {
            "wpos": _scale(_sub(mpos, self._wco()), unit)}
        return gp.format_status(state, substate=sub, feed=speed * unit, buffer=buffer,
                                wco=wco, overrides=ovr, pins=self.pins,
                                inches=bool(self._settings[13]), **kw)

    def _publish(self) -> None:
        if self.bench is not None:
            p = _sub(self._phys, self._bench_origin)
            self.bench.set_stage(p[0], p[1], moving=self._mode in _MOVING)

    # -- line processing --------------------------------------------------------------------
    def _process_lines(self, now: float) -> None:
        while True:
            if self._critical or self._mode in (_HOME,) or self._dwell_until is not None:
                return
            if self._dwell_waiting:
                if self._planner or self._mode != _IDLE:
                    return
                self._dwell_waiting = False
                self._dwell_until = now + self._dwell_s * self.config.time_scale
                return
            ends = [i for i in (self._rx.find(b"\n"), self._rx.find(b"\r")) if i >= 0]
            if not ends:
                return
            i = min(ends)
            text = self._rx[:i].decode("ascii", "replace")
            clean = re.sub(r"\([^)]*\)|;.*$", "", text).replace(" ", "").replace("\t", "")
            clean = clean.upper()
            is_gcode = bool(clean) and (not clean.startswith("$") or clean.startswith("$J="))
            if is_gcode and len(self._planner) >= self.config.planner_blocks:
                return                              # planner full: the line waits in RX
            del self._rx[: i + 1]
            self.received_lines.append(text)
            self._execute(clean, now)

    def _execute(self, line: str, now: float) -> None:
        if len(line) > gp.LINE_BUFFER_SIZE - 1:
            self._emit("error:11")
            return
        if not line:
            self._emit("ok")                        # empty line: GRBL acknowledges it
            return
        if line.startswith("$"):
            code = self._system(line, now)
        elif self._mode in (_ALARM, _JOG, _JOG_CANCEL):
            code = 9                                # protocol.c: g-code locked in Alarm and Jog
        else:
            try:
                code = self._gcode(line, now)
            except _GcodeError as exc:
                code = exc.code
        if code == 0:
            self._emit("ok")
        elif code is not None and code > 0:
            self._emit(f"error:{code}")

    def _system(self, line: str, now: float) -> int | None:
        idle_or_alarm = self._mode in (_IDLE, _ALARM)
        if line == "$":
            self._emit("[HLP:$$ $# $G $I $N $x=val $Nx=line $J=line $SLP $C $X $H ~ ! ? ctrl-x]")
            return 0
        if line == "$$":
            if self._mode in (_RUN, _HOLD, _HOLD_DECEL, _JOG, _JOG_CANCEL):
                return 8
            for n in sorted(self._settings):
                v = self._settings[n]
                self._emit(f"${n}={v:.3f}" if n in (11, 12, 24, 25, 27) or n >= 100
                           else f"${n}={int(v)}")
            return 0
        if line == "$X":
            if self._mode == _ALARM:
                self._emit(f"[MSG:{gp.MSG_UNLOCKED}]")
                self._mode = _IDLE
            return 0
        if line == "$G":
            g = "G90" if self._absolute else "G91"
            u = "G20" if self._inches else "G21"
            m = {0: "G0", 10: "G1", 800: "G80"}[self._motion_mode]
            self._emit(f"[GC:{m} G54 G17 {u} {g} G94 M5 M9 T0 F{self._feed:g} S0]")
            return 0
        if line == "$C":
            return 3                                # check mode: not modelled
        if line.startswith("$J="):                  # system.c: jog only from Idle or Jog
            return self._jog(line[3:], now) if self._mode in (_IDLE, _JOG) else 8
        if not idle_or_alarm:
            return 8
        if line == "$I":
            self._emit(f"[VER:{self.config.version}.{self.config.build_date}:]")
            self._emit(f"[OPT:V,{self.config.planner_blocks},{self.config.rx_buffer_size}]")
            return 0
        if line == "$#":
            for name, v in (("G54", self._g54), ("G55", _ZERO), ("G56", _ZERO),
                            ("G57", _ZERO), ("G58", _ZERO), ("G59", _ZERO),
                            ("G28", _ZERO), ("G30", _ZERO), ("G92", self._g92)):
                self._emit(f"[{name}:{v[0]:.3f},{v[1]:.3f},{v[2]:.3f}]")
            self._emit("[TLO:0.000]")
            self._emit("[PRB:0.000,0.000,0.000:0]")
            return 0
        if line == "$H":
            if not self._settings[22]:
                return 5
            self._start_homing(now)
            return None                              # 'ok' when homing completes
        m = re.fullmatch(r"\$(\d+)=(" + _NUMBER.pattern + ")", line)
        if m:
            n, value = int(m.group(1)), float(m.group(2))
            if n not in self._settings:
                return 3
            if value < 0:
                return 4
            self._settings[n] = value
            return 0
        return 3

    def _gcode(self, line: str, now: float) -> int:
        words: list[tuple[str, float]] = []
        pos = 0
        while pos < len(line):
            letter = line[pos]
            if not "A" <= letter <= "Z":
                raise _GcodeError(1)
            m = _NUMBER.match(line, pos + 1)
            if not m:
                raise _GcodeError(2)
            words.append((letter, float(m.group())))
            pos = m.end()
        groups: dict[str, int] = {}
        values: dict[str, float] = {}
        for letter, value in words:
            if letter == "G":
                code = round(value * 10)
                group = _G_GROUPS.get(code)
                if group is None:
                    raise _GcodeError(20)
                if group in groups:
                    raise _GcodeError(21)
                groups[group] = code
            elif letter == "M":
                if value not in _M_OK:
                    raise _GcodeError(20)
            elif letter in "XYZFPLNST":
                if letter in values:
                    raise _GcodeError(25)
                values[letter] = value
            else:
                raise _GcodeError(20)
        if "units" in groups:
            self._inches = groups["units"] == 200
        scale = 25.4 if self._inches else 1.0
        if "F" in values:
            if values["F"] < 0:
                raise _GcodeError(4)
            self._feed = values["F"] * scale
        if "distance" in groups:
            self._absolute = groups["distance"] == 900
        if "motion" in groups:
            self._motion_mode = groups["motion"]
        axes = {k: values[k] * scale for k in "XYZ" if k in values}
        nonmodal = groups.get("nonmodal")
        if nonmodal == 40:                           # G4 dwell: wait for the planner first
            if "P" not in values:
                raise _GcodeError(28)
            self._dwell_s = max(values["P"], 0.0)
            self._dwell_waiting = True
            return -1                                 # 'ok' once the dwell is over
        if nonmodal == 100:                          # G10 L2/L20 P0/P1: set G54
            if "L" not in values or "P" not in values:
                raise _GcodeError(28)
            if int(values["P"]) not in (0, 1):
                raise _GcodeError(29)
            g54 = list(self._g54)
            for i, k in enumerate("XYZ"):
                if k in axes:
                    if int(values["L"]) == 2:
                        g54[i] = axes[k]
                    elif int(values["L"]) == 20:
                        g54[i] = self._gc_pos[i] - self._g92[i] - axes[k]
                    else:
                        raise _GcodeError(20)
            self._g54 = (g54[0], g54[1], g54[2])
            self._wco_counter = 0
            return 0
        if nonmodal == 920:                          # G92: current point becomes the given one
            g92 = list(self._g92)
            for i, k in enumerate("XYZ"):
                if k in axes:
                    g92[i] = self._gc_pos[i] - self._g54[i] - axes[k]
            self._g92 = (g92[0], g92[1], g92[2])
            self._wco_counter = 0
            return 0
        if nonmodal == 921:
            self._g92 = _ZERO
            self._wco_counter = 0
            return 0
        if not axes:
            return 0
        if self._motion_mode == 800:
            raise _GcodeError(31)
        if self._motion_mode == 10 and self._feed <= 0:
            raise _GcodeError(22)
        target = list(self._gc_pos)
        machine = nonmodal == 530
        if machine and self._motion_mode not in (0, 10):
            raise _GcodeError(30)
        for i, k in enumerate("XYZ"):
            if k in axes:
                if machine:
                    target[i] = axes[k]
                elif self._absolute:
                    target[i] = axes[k] + self._wco()[i]
                else:
                    target[i] = self._gc_pos[i] + axes[k]
        tgt: Vec = (target[0], target[1], target[2])
        if self._settings[20] and self._beyond_travel(tgt):
            self._soft_limit(now)
            return -1
        self._gc_pos = tgt
        phys_target = _sub(tgt, self._err)
        last = self._planner[-1].target if self._planner else self._phys
        if _norm(_sub(phys_target, last)) > 1e-9:
            self._planner.append(_Block(phys_target, self._feed, self._motion_mode == 0))
            if self._mode == _IDLE:
                self._mode = _RUN
                self._t_cursor = now
        return 0

    def _jog(self, words_text: str, now: float) -> int:
        """``$J=`` (gcode.c, jog motion): G20/G21, G90/G91, G53, X Y Z and a required F; the
        parser's modal state is left as it was. Beyond travel: error:15, no alarm."""
        words: dict[str, float] = {}
        gcodes: set[int] = set()
        pos = 0
        while pos < len(words_text):
            letter = words_text[pos]
            m = _NUMBER.match(words_text, pos + 1)
            if not "A" <= letter <= "Z" or not m:
                return 2 if "A" <= letter <= "Z" else 1
            value = float(m.group())
            pos = m.end()
            if letter == "G":
                code = round(value * 10)
                if code not in (200, 210, 900, 910, 530):
                    return 16                       # a prohibited g-code in a jog
                gcodes.add(code)
            elif letter in "XYZF":
                if letter in words:
                    return 25
                words[letter] = value
            else:
                return 16
        if "F" not in words:
            return 22
        scale = 25.4 if (200 in gcodes or self._inches and 210 not in gcodes) else 1.0
        axes = {k: words[k] * scale for k in "XYZ" if k in words}
        if not axes:
            return 26
        absolute = 900 in gcodes or self._absolute and 910 not in gcodes
        target = list(self._gc_pos)
        for i, k in enumerate("XYZ"):
            if k in axes:
                if 530 in gcodes:
                    target[i] = axes[k]
                elif absolute:
                    target[i] = axes[k] + self._wco()[i]
                else:
                    target[i] = self._gc_pos[i] + axes[k]
        tgt: Vec = (target[0], target[1], target[2])
        if self._settings[20] and self._beyond_travel(tgt):
            return 15
        self._gc_pos = tgt
        phys_target = _sub(tgt, self._err)
        last = self._planner[-1].target if self._planner else self._phys
        if _norm(_sub(phys_target, last)) > 1e-9:
            self._planner.append(_Block(phys_target, words["F"] * scale, False))
            if self._mode == _IDLE:
                self._mode = _JOG
                self._t_cursor = now
        return 0

    def _beyond_travel(self, target: Vec) -> bool:
        for i, n in enumerate((130, 131, 132)):
            if target[i] > 1e-6 or target[i] < -self._settings[n] - 1e-6:
                return True
        return False

    def _soft_limit(self, now: float) -> None:
        """GRBL 1.1: ALARM:2 from inside the line's parser, which blocks until the host resets
        (then that line is acknowledged late)."""
        self._trip_alarm(2, now)
        self._late_ok = True
