"""GRBL 1.1 XY stage driver over pyserial (real port, pseudo-terminal, or ``loop://``).

Protocol rules live in :mod:`rig.grbl_protocol` (sans-IO); this module only moves bytes and
keeps time. Behaviour worth knowing:

* **Open**: waits for the greeting an Arduino-class board prints after the DTR reset, probing
  with ``?`` so a board that does not reset is found too; checks the version (1.1 only), reads
  ``$I`` (RX buffer size) and ``$$`` (mm units; the speed and acceleration used for timeouts
  are the lower of the config and the firmware's), and homes when ``home_on_open``.
* **Moves**: soft limits are checked before anything is sent. Lines are streamed with GRBL's
  character-counting protocol; a move is done when the controller reports ``Idle`` at the
  target, polled with ``?``; the timeout comes from distance, speed and acceleration
  (trapezoid x factor + margin). A feed hold pauses that clock (bounded by ``hold_timeout_s``).
* **Faults**: every wait has a deadline. ``error:N`` / ``ALARM:N`` become typed exceptions with
  GRBL's own texts. Garbage lines are counted and skipped. A lost ``ok`` is recovered when the
  status proves the command took effect (stage idle at the target, alarm cleared...).
  After an alarm the controller is reset and re-homed (or unlocked for a soft-limit alarm)
  when ``rehome_after_alarm`` is set -- the interrupted move is not repeated. A pulled cable
  raises :class:`~rig.stage.StageConnectionError`.
* **Threads**: one thread drives the stage; :meth:`GrblStage.stop`, :meth:`feed_hold` and
  :meth:`resume` may be called from any other (e.g. a GUI button) while it waits.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rig import grbl_protocol as gp
from rig.serial_link import LinkErrors, SerialLink
from rig.stage import (
    Stage,
    StageAlarmError,
    StageCommandError,
    StageConnectionError,
    StageError,
    StageLimitError,
    StageLimits,
    StageMotionError,
    StageProtocolError,
    StageState,
    StageStateError,
    StageStatus,
    StageTimeoutError,
)

log = logging.getLogger(__name__)



@dataclass
class GrblSettings:
    """Everything the GRBL driver needs; field names match ``[stage]`` of the station file."""

    port: str
    serial_number: str = ""             # USB adapter's: found again after a re-plug
    baudrate: int = 115200
    max_speed_mm_s: float = 50.0
    acceleration_mm_s2: float = 500.0
    x_limits_mm: tuple[float, float] = (0.0, 200.0)
    y_limits_mm: tuple[float, float] = (0.0, 250.0)
    home_on_open: bool = True
    rehome_after_alarm: bool = True
    command_timeout_s: float = 2.0
    boot_timeout_s: float = 2.5          # Arduino bootloader after the DTR reset
    homing_timeout_s: float = 60.0
    move_timeout_factor: float = 1.5
    move_timeout_margin_s: float = 1.0
    poll_interval_s: float = 0.1          # '?' rate while moving: GRBL asks for <= 5..10 Hz
    arrival_poll_s: float = 0.02          # '?' rate from just before a move's computed end
    position_tolerance_mm: float = 0.01
    hold_timeout_s: float = 300.0        # longest feed hold a wait tolerates
    work_offset_mm: tuple[float, float] | None = None   # G54 to set after homing (None: keep)
    check_firmware_settings: bool = True

    @classmethod
    def from_config(cls, stage: Any, port: str | None = None, **overrides: Any) -> GrblSettings:
        """Build from a ``[stage]`` config section (any object with matching attributes)."""
        names = {f.name for f in dataclasses.fields(cls)}
        values = {n: getattr(stage, n) for n in names if hasattr(stage, n)}
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
        if port is not None:
            values["port"] = port
        values.update(overrides)
        return cls(**values)


class _Marker:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


RESET_BANNER_DELAY_S = gp.ALARM_REPORT_DELAY_S + 0.1  # ALARM:3/6-9 delay the banner this long
RESET_RESEND_S = 0.7  # Ctrl-X again when no banner came: longer than that delay, so never twice

_RESET = _Marker("reset")     # the controller reset before acknowledging the line
_LOST = _Marker("lost")       # acknowledgement never came; re-sync proved the line processed


class _AckTimeout(Exception):
    pass


@dataclass
class _QueuedMove:
    ticket: int
    target: tuple[float, float]
    timeout_s: float
    line: bytes


_STATE_MAP = {
    gp.MachineState.IDLE: StageState.IDLE, gp.MachineState.RUN: StageState.MOVING,
    gp.MachineState.JOG: StageState.MOVING, gp.MachineState.HOME: StageState.HOMING,
    gp.MachineState.HOLD: StageState.HOLD, gp.MachineState.DOOR: StageState.HOLD,
    gp.MachineState.ALARM: StageState.ALARM, gp.MachineState.CHECK: StageState.OTHER,
    gp.MachineState.SLEEP: StageState.OTHER,
}


class GrblStage(Stage):
    """XY translator on a GRBL 1.1 controller."""

    def __init__(
        self, settings: GrblSettings, *, serial_factory: Callable[..., Any] | None = None,
    ) -> None:
        self.settings = settings
        self._limits = StageLimits.from_ranges(settings.x_limits_mm, settings.y_limits_mm)
        self._link = SerialLink(
            settings.port, settings.baudrate, name="GRBL", factory=serial_factory,
            serial_number=settings.serial_number,
            errors=LinkErrors(StageConnectionError, StageStateError, StageTimeoutError),
            open_failure="cannot open the GRBL stage port {port!r}: {exc}. Check [stage] port "
                         "in the station config (`main.py devices` lists serial ports) and that "
                         "no other program holds the port.")
        self._lock = threading.RLock()
        self._stop_request = threading.Event()
        self._stop_done = threading.Event()
        self.firmware_version: str | None = None
        self.firmware_settings: dict[int, float] = {}
        self.messages: deque[str] = deque(maxlen=50)
        self.garbage_lines = 0
        self.lost_replies = 0
        self.stray_replies = 0
        self._reset_session()

    def _reset_session(self) -> None:
        self._splitter = gp.LineSplitter()
        self._streamer = gp.CharCountingStreamer()
        self._results: dict[int, object] = {}
        self._queue: list[_QueuedMove] = []
        self._status: gp.StatusReport | None = None
        self._status_seq = 0
        self._status_time = 0.0
        self._wco: gp.XYZ | None = None
        self._alarm: gp.AlarmReply | None = None
        self._greetings = 0
        self._unexpected_reset = False
        self._expect_greeting = False
        self._recovering = False
        self._collect: list[object] | None = None
        self._target: tuple[float, float] | None = None
        self._eff_speed = self.settings.max_speed_mm_s
        self._eff_accel = self.settings.acceleration_mm_s2
        self._arrival = 0.0  # monotonic time the queued moves should end (trapezoid times)
        self._critical_since: float | None = None  # ALARM:1/2 seen, no reset since

    # ------------------------------------------------------------------------------------
    # lifecycle
    # ------------------------------------------------------------------------------------
    @property
    def port(self) -> str:
        return self.settings.port

    @property
    def is_open(self) -> bool:
        return self._link.is_open

    @property
    def limits(self) -> StageLimits:
        return self._limits

    @property
    def target(self) -> tuple[float, float] | None:
        return self._target

    def open(self) -> None:
        with self._lock:
            if self._link.is_open:
                return
            self._reset_session()
            self.firmware_version = None
            self._link.open()
            try:
                self._handshake()
                self._read_build_info()
                if self.settings.check_firmware_settings:
                    self._read_firmware_settings()
                st = self._query_status(self.settings.command_timeout_s, need_wco=True)
                if self.settings.home_on_open:
                    self._home(self.settings.homing_timeout_s)
                elif st.state is gp.MachineState.ALARM:
                    log.warning("GRBL on %s is locked (Alarm): call home() or unlock() before "
                                "moving", self.port)
            except BaseException:
                self._link.close()
                raise

    def close(self) -> None:
        if not self._link.is_open:
            return
        if not self._lock.acquire(timeout=5.0):
            log.warning("closing GRBL port %s while another thread still uses it", self.port)
            self._link.close()
            return
        try:
            st = self._status
            if (self._link.lost_reason is None and st is not None
                    and st.state in (gp.MachineState.RUN, gp.MachineState.HOME)):
                try:
                    self._stop_sequence()
                except StageError as exc:
                    log.warning("could not stop the stage before closing: %s", exc)
            self._link.close()
        finally:
            self._lock.release()

    # ------------------------------------------------------------------------------------
    # public API
    # ------------------------------------------------------------------------------------
    def home(self, timeout: float | None = None) -> None:
        with self._lock:
            self._link.require_open()
            self._home(timeout or self.settings.homing_timeout_s)

    def unlock(self) -> None:
        """``$X``: clear the alarm lock without homing (only when the position is known good)."""
        with self._lock:
            self._link.require_open()
            if self._critical_since is not None:  # silent until reset: reset first
                self._soft_reset_sync(critical=True)
            st = self._query_status(self.settings.command_timeout_s)
            if st.state is gp.MachineState.ALARM and self._critical_alarm_pending():
                self._soft_reset_sync()
            self._command(gp.cmd_unlock(), self.settings.command_timeout_s,
                          verify=lambda s: s.state is not gp.MachineState.ALARM)
            self._target = None

    def move_to(
        self, x: float, y: float, speed: float | None = None, *, wait: bool = True,
        timeout: float | None = None,
    ) -> None:
        with self._lock:
            self._link.require_open()
            self._limits.check(x, y, port=self.port)
            v = self._speed(speed)
            self._check_async()
            start = self._target if self._target is not None else self._current_xy()
            dist = math.hypot(x - start[0], y - start[1])
            move_t = gp.move_timeout(dist, v, self._eff_accel,
                                     factor=self.settings.move_timeout_factor,
                                     margin_s=self.settings.move_timeout_margin_s)
            line = gp.cmd_move(x, y, feed_mm_min=v * 60.0)
            sent = time.monotonic()
            ticket = self._send(line, sent + self.settings.command_timeout_s + move_t)
            self._track(_QueuedMove(ticket, (x, y), move_t, line), sent, dist, v)
            if wait:
                self.wait_idle(timeout)

    def jog(self, dx: float, dy: float, speed: float | None = None) -> tuple[float, float]:
        """Start a relative jog (``$J=``) and return its target once GRBL accepted it; the
        stage moves on while the call returns. :meth:`jog_cancel` stops it where it is (the
        operator releasing a jog button), :meth:`wait_idle` waits for its end. The target is
        checked against the soft limits first; GRBL refuses one beyond its own travel
        (error:15) without moving or raising an alarm, and a jog while not idle (error:8)."""
        with self._lock:
            self._link.require_open()
            v = self._speed(speed)
            self._check_async()
            start = self._target if self._target is not None else self._current_xy()
            x, y = start[0] + dx, start[1] + dy
            self._limits.check(x, y, port=self.port)
            line = gp.cmd_jog(dx, dy, feed_mm_min=v * 60.0)
            sent = time.monotonic()
            ticket = self._send(line, sent + self.settings.command_timeout_s)
            try:
                self._wait_ticket(ticket, sent + self.settings.command_timeout_s, line=line)
            except _AckTimeout:
                self._resync()
                raise StageTimeoutError(f"no reply to a jog from GRBL on {self.port} within "
                                        f"{self.settings.command_timeout_s:.1f} s",
                                        port=self.port) from None
            except StageCommandError as exc:
                if exc.code == 15:
                    raise StageLimitError(
                        f"jog to ({x:.3f}, {y:.3f}) mm is beyond the travel GRBL on {self.port} "
                        f"allows: {exc.controller_text} The stage did not move; check $130/$131 "
                        "(max travel) against the station's stage limits", port=self.port) \
                        from None
                if exc.code == 8:
                    raise StageStateError(
                        f"GRBL on {self.port} only jogs when idle or jogging: wait for the move "
                        "or scan to finish", port=self.port) from None
                raise
            dist = math.hypot(dx, dy)
            self._track(_QueuedMove(ticket, (x, y), gp.move_timeout(
                dist, v, self._eff_accel, factor=self.settings.move_timeout_factor,
                margin_s=self.settings.move_timeout_margin_s), line), sent, dist, v)
            return (x, y)

    def _track(self, move: _QueuedMove, sent: float, dist: float, speed: float) -> None:
        """A move or jog GRBL has (or will have) in its planner: waited for by `wait_idle`,
        its computed end lining up the arrival polls."""
        self._queue.append(move)
        self._arrival = max(sent, self._arrival) + gp.trapezoid_time(dist, speed,
                                                                     self._eff_accel)
        self._target = move.target

    def jog_cancel(self) -> tuple[float, float]:
        """Stop a jog where it is: 0x85 (decelerate, flush queued jogs), wait until the
        controller has left the Jog state, then ``G4 P0`` so its parser position is the
        stopped one before any absolute move. Returns that position; harmless without a jog."""
        with self._lock:
            self._link.require_open()
            self._link.write(gp.cmd_jog_cancel())
            deadline = time.monotonic() + self._stop_budget() + self.settings.command_timeout_s
            while self._query_status(self.settings.command_timeout_s).state \
                    is gp.MachineState.JOG:
                if time.monotonic() > deadline:
                    raise StageTimeoutError(f"GRBL on {self.port} still jogging "
                                            f"{self._stop_budget():.1f} s after a jog cancel",
                                            port=self.port)
                self._pump(time.monotonic() + self.settings.poll_interval_s)
            self._queue.clear()
            self._command(gp.cmd_sync(), self.settings.command_timeout_s)
            self._target = self._current_xy()
            self._arrival = time.monotonic()
            return self._target

    def position(self) -> tuple[float, float]:
        return self.status().position

    def status(self) -> StageStatus:
        with self._lock:
            self._link.require_open()
            rep = self._query_status(self.settings.command_timeout_s, need_wco=True)
            return self._to_stage_status(rep)

    @property
    def last_status(self) -> StageStatus | None:
        """The most recent status seen (no I/O): cheap for a GUI to show while a move runs."""
        rep = self._status
        return None if rep is None else self._to_stage_status(rep, strict=False)

    def wait_idle(self, timeout: float | None = None) -> tuple[float, float]:
        with self._lock:
            self._link.require_open()
            return self._wait_idle(timeout)

    def stop(self) -> None:
        """Stop now and keep the position: feed hold, wait until stopped, soft reset (flushes
        queued moves). From another thread while a move waits, that wait raises
        :class:`StageMotionError`; this call returns once the stage is stopped."""
        if not self._link.is_open:
            return
        if self._lock.acquire(blocking=False):
            try:
                self._stop_sequence()
            finally:
                self._lock.release()
            return
        self._stop_done.clear()
        self._stop_request.set()
        self._link.write(gp.cmd_feed_hold())          # brake at once; the owner finishes the stop
        deadline = time.monotonic() + self._stop_budget() + 2 * self.settings.command_timeout_s
        while not self._stop_done.wait(0.05):
            if self._lock.acquire(timeout=0.05):  # the owner left without seeing the request
                try:
                    if self._stop_request.is_set():
                        self._stop_sequence()
                finally:
                    self._lock.release()
                return
            if time.monotonic() > deadline:
                raise StageTimeoutError(f"stop of GRBL stage on {self.port} did not complete",
                                        port=self.port)

    def feed_hold(self) -> None:
        """Decelerate to a pause (``!``); :meth:`resume` continues. Thread-safe."""
        self._link.write(gp.cmd_feed_hold())

    def resume(self) -> None:
        """Continue after a feed hold (``~``). Thread-safe."""
        self._link.write(gp.cmd_cycle_start())

    def soft_reset(self) -> None:
        """Ctrl-X: flush everything queued. A reset during motion loses the position
        (ALARM:3); use :meth:`stop` to stop moving safely."""
        with self._lock:
            self._link.require_open()
            self._soft_reset_sync()
            self._target = None

    # ------------------------------------------------------------------------------------
    # connection and handshake
    # ------------------------------------------------------------------------------------
    def _handshake(self) -> None:
        """Greeting (board reset on open) or a status reply (board already running)."""
        s = self.settings
        start = time.monotonic()
        received = bytearray()
        self._expect_greeting = True
        try:
            deadline = start + s.boot_timeout_s
            next_probe = start + min(0.25, s.boot_timeout_s / 4)
            seq = self._status_seq
            while self._greetings == 0 and self._status_seq == seq:
                now = time.monotonic()
                if now >= deadline:
                    break
                if now >= next_probe:
                    self._link.write(gp.cmd_status_query())
                    next_probe = now + 0.25
                self._pump(min(deadline, next_probe), received)
            if self._greetings == 0 and self._status_seq == seq:
                # no reset on open and no answer to '?': try a soft reset once
                self._link.write(gp.cmd_soft_reset())
                deadline = time.monotonic() + s.command_timeout_s
                while self._greetings == 0 and time.monotonic() < deadline:
                    self._pump(deadline, received)
            if self._greetings == 0 and self._status_seq == seq:
                seen = bytes(received[:60])
                what = (f"it sent {len(received)} bytes that are not GRBL ({seen!r}...); "
                        "wrong device or baud rate?" if received else "it sent nothing")
                if received and set(received) <= set(b"?\x18"):
                    what = "it echoed our own bytes back (a loopback, not a GRBL board)"
                raise StageConnectionError(
                    f"no GRBL 1.1 controller answered on {self.port} at {s.baudrate} baud "
                    f"within {time.monotonic() - start:.1f} s: {what}. Check the port, the "
                    "baud rate ([stage] baudrate) and that the board is powered.", port=self.port)
        finally:
            self._expect_greeting = False
        if self.firmware_version is not None:
            self._check_version(self.firmware_version)

    def _check_version(self, version: str) -> None:
        if not version.startswith(gp.SUPPORTED_MAJOR_MINOR):
            raise StageProtocolError(
                f"GRBL {version} on {self.port}: this driver speaks GRBL "
                f"{gp.SUPPORTED_MAJOR_MINOR} (status reports and error codes differ); flash "
                "GRBL 1.1 or use a matching driver.", port=self.port)

    def _read_build_info(self) -> None:
        """``$I``: version (when no greeting was seen) and the RX buffer size from [OPT:]."""
        try:
            lines = self._collect_lines(gp.cmd_build_info())
        except StageCommandError as exc:        # error:8 while the machine is busy
            log.info("GRBL on %s: $I not available now (%s)", self.port, exc)
            lines = []
        for item in lines:
            if isinstance(item, gp.Feedback) and item.tag == "VER":
                version = item.body.split(":")[0].split(".")
                if self.firmware_version is None and len(version) >= 2:
                    self.firmware_version = ".".join(version[:2])
                    self._check_version(self.firmware_version)
            if isinstance(item, gp.Feedback) and item.tag == "OPT":
                parts = item.body.split(",")
                if len(parts) >= 3 and parts[2].strip().isdigit():
                    rx = int(parts[2])
                    if 32 <= rx <= 4096 and self._streamer.pending == 0:
                        self._streamer = gp.CharCountingStreamer(rx)
        if self.firmware_version is None:
            raise StageProtocolError(f"controller on {self.port} answers like GRBL but did "
                                     "not report its version", port=self.port)

    def _read_firmware_settings(self) -> None:
        try:
            lines = self._collect_lines(gp.cmd_settings())
        except StageCommandError as exc:
            log.info("GRBL on %s: $$ not available now (%s)", self.port, exc)
            return
        self.firmware_settings = {m.number: m.value for m in lines if isinstance(m, gp.Setting)}
        fw = self.firmware_settings
        if fw.get(13, 0) != 0:
            raise StageProtocolError(
                f"GRBL on {self.port} reports positions in inches ($13=1); send '$13=0' so it "
                "reports millimetres.", port=self.port)
        rates = [fw[n] / 60.0 for n in (110, 111) if fw.get(n, 0) > 0]
        accels = [fw[n] for n in (120, 121) if fw.get(n, 0) > 0]
        if rates and min(rates) < self._eff_speed:
            log.warning("GRBL max rate ($110/$111) %.1f mm/s is below max_speed_mm_s %.1f; "
                        "using the firmware's", min(rates), self._eff_speed)
            self._eff_speed = min(rates)
        if accels and min(accels) < self._eff_accel:
            log.warning("GRBL acceleration ($120/$121) %.1f mm/s^2 is below "
                        "acceleration_mm_s2 %.1f; using the firmware's", min(accels),
                        self._eff_accel)
            self._eff_accel = min(accels)
        if fw.get(20, 0) and all(n in fw for n in (130, 131)):
            span = (self._limits.x_max - self._limits.x_min, self._limits.y_max - self._limits.y_min)
            if span[0] > fw[130] + 1e-6 or span[1] > fw[131] + 1e-6:
                log.warning("configured stage limits span %.1f x %.1f mm but GRBL travel "
                            "($130/$131) is %.1f x %.1f mm: moves near the ends will trip "
                            "ALARM:2", span[0], span[1], fw[130], fw[131])

    def _collect_lines(self, line: bytes) -> list[object]:
        """Send a '$' query and return the bracketed/setting lines printed before its ok."""
        self._collect = []
        try:
            self._command(line, self.settings.command_timeout_s)
            return self._collect
        finally:
            self._collect = None

    # ------------------------------------------------------------------------------------
    # homing, alarms, resets, stop
    # ------------------------------------------------------------------------------------
    def _home(self, timeout: float) -> None:
        if self._critical_since is not None:  # silent until reset: reset first
            self._soft_reset_sync(critical=True)
        st = self._query_status(self.settings.command_timeout_s)
        if st.state in (gp.MachineState.RUN, gp.MachineState.JOG, gp.MachineState.HOLD):
            raise StageStateError(f"cannot home the stage on {self.port} while it is in "
                                  f"{st.state.value}; stop() first", port=self.port)
        if st.state is gp.MachineState.ALARM and self._critical_alarm_pending():
            self._soft_reset_sync()
        self._alarm = None
        self._target = None
        deadline = time.monotonic() + timeout
        ticket = self._send(gp.cmd_home(), deadline)
        try:
            self._wait_ticket(ticket, deadline, poll_status=True, line=gp.cmd_home())
        except _AckTimeout:
            st = self._resync()
            if st.state is gp.MachineState.IDLE and not self._unexpected_reset:
                log.warning("GRBL on %s: 'ok' for $H lost; status shows homing done", self.port)
                self.lost_replies += 1
            else:
                raise StageTimeoutError(
                    f"homing on {self.port} did not finish within {timeout:.1f} s (state "
                    f"{st.raw}); check the limit switches and homing_timeout_s",
                    port=self.port) from None
        if self.settings.work_offset_mm is not None:
            ox, oy = self.settings.work_offset_mm
            self._command(gp.cmd_set_work_offset(ox, oy), self.settings.command_timeout_s,
                          verify=lambda s: s.wco is not None
                          and abs(s.wco[0] - ox) < 1e-3 and abs(s.wco[1] - oy) < 1e-3)
        rep = self._query_status(self.settings.command_timeout_s, need_wco=True)
        self._target = self._to_stage_status(rep).position
        self.messages.clear()

    def _critical_alarm_pending(self) -> bool:
        return self._critical_since is not None or (
            bool(self.messages) and self.messages[-1] == gp.MSG_RESET_TO_CONTINUE)

    def _await_greeting(self, timeout: float) -> None:
        """Until the next banner arrives (or `timeout`): after a self-resetting alarm GRBL
        answers nothing for its 500 ms report delay."""
        count, deadline = self._greetings, time.monotonic() + timeout
        while self._greetings == count and time.monotonic() < deadline:
            self._pump(deadline)
        self._drain(0.02)

    def _wait_for_reset_prompt(self) -> None:
        """After ALARM:1/2, until "[MSG:Reset to continue]" (or 0.6 s after the alarm line):
        a Ctrl-X before it is discarded by the firmware."""
        since = self._critical_since or time.monotonic()
        deadline = since + gp.ALARM_REPORT_DELAY_S + 0.1
        while time.monotonic() < deadline:
            if self.messages and self.messages[-1] == gp.MSG_RESET_TO_CONTINUE:
                return
            self._pump(deadline)

    def _check_async(self) -> None:
        """Raise for what arrived unasked: an alarm, an unexpected reset, a stop request."""
        if self._stop_request.is_set():
            self._stop_sequence()
            pos = self._status_xy()
            raise StageMotionError(
                f"move interrupted by stop(); stage stopped at {_fmt_xy(pos)}", port=self.port)
        if self._alarm is not None:
            alarm, self._alarm = self._alarm, None
            self._handle_alarm(alarm.code, alarm.describe())
        if self._unexpected_reset:
            self._unexpected_reset = False
            self._handle_alarm(None, "the controller restarted unexpectedly (power glitch, "
                                     "watchdog, or another program sent a reset); its position "
                                     "is no longer referenced")

    def _handle_alarm(self, code: int | None, text: str) -> None:
        self._target = None
        self._queue.clear()
        self._expect_greeting = True
        try:
            if code is not None and code not in gp.CRITICAL_ALARMS:
                self._await_greeting(RESET_BANNER_DELAY_S)  # the firmware restarts by itself
            else:
                self._drain(0.05)
        finally:
            self._expect_greeting = False
        self._alarm = None
        self._unexpected_reset = False
        recovered, note = False, ""
        rehomable = code is None or code in gp.REHOMABLE_ALARMS
        if self._recovering:
            pass
        elif self.settings.rehome_after_alarm and rehomable:
            self._recovering = True
            try:
                self._soft_reset_sync(critical=code in gp.CRITICAL_ALARMS)
                if code == 2:
                    self._command(gp.cmd_unlock(), self.settings.command_timeout_s,
                                  verify=lambda s: s.state is not gp.MachineState.ALARM)
                    note = "; the controller was reset and unlocked (position retained)"
                else:
                    self._home(self.settings.homing_timeout_s)
                    note = "; the controller was reset and re-homed"
                recovered = True
            except StageError as exc:
                note = f"; automatic recovery failed: {exc}"
            finally:
                self._recovering = False
        else:
            note = ("; home() (or unlock() if the position is known good) before moving again"
                    if rehomable else "; check the machine (limit switches, wiring) and home()")
        raise StageAlarmError(f"GRBL on {self.port}: {text}{note}", code=code,
                              controller_text=text, recovered=recovered, port=self.port)

    def _soft_reset_sync(self, critical: bool = False) -> gp.StatusReport:
        """Ctrl-X, wait for the greeting, then for a status (so no older line is in transit).

        GRBL 1.1h delays 500 ms after every ALARM line and only then restarts (or, after a
        hard or soft limit, prints "[MSG:Reset to continue]" and discards any reset received
        so far): so `critical` first waits for that message (or 0.6 s), Ctrl-X is sent again
        while no banner comes, and the late `ok` of the line that tripped is ignored.
        """
        self._expect_greeting = True
        try:
            if critical:
                self._wait_for_reset_prompt()
            self._drain(0.05)
            count = self._greetings
            budget = self.settings.command_timeout_s + RESET_BANNER_DELAY_S
            deadline = time.monotonic() + budget
            next_send = time.monotonic()
            while self._greetings == count:
                now = time.monotonic()
                if now >= deadline:
                    what = ("critical alarm: the controller waits for a reset and did not "
                            "take one; power-cycle it" if critical else
                            "did not restart after a soft reset")
                    raise StageTimeoutError(f"GRBL on {self.port} {what} (within "
                                            f"{budget:.1f} s)", port=self.port)
                if now >= next_send:  # again while no banner: the firmware may have cleared it
                    self._link.write(gp.cmd_soft_reset())
                    next_send = now + RESET_RESEND_S
                self._pump(min(deadline, next_send))
            self._critical_since = None
            st = self._query_status(self.settings.command_timeout_s)
        finally:
            self._expect_greeting = False
        self._alarm = None                    # ALARM:3 of a reset in motion shows as the state
        self._unexpected_reset = False
        self._queue.clear()
        return st

    def _stop_budget(self) -> float:
        v, a = self._eff_speed, self._eff_accel
        return 2.0 * v / a + 1.0

    def _stop_sequence(self) -> None:
        try:
            self._link.write(gp.cmd_feed_hold())
            deadline = time.monotonic() + self._stop_budget()
            while time.monotonic() < deadline:
                st = self._query_status(self.settings.command_timeout_s)
                if (st.state is gp.MachineState.HOLD and st.substate == 0) or st.state in (
                        gp.MachineState.IDLE, gp.MachineState.ALARM):
                    break
                self._drain(self.settings.poll_interval_s)
            st = self._soft_reset_sync()
            if st.state is gp.MachineState.ALARM:
                log.warning("GRBL on %s: stopped, but the controller is in alarm; home() "
                            "before moving", self.port)
            self._target = None
        finally:
            self._stop_request.clear()
            self._stop_done.set()

    # ------------------------------------------------------------------------------------
    # waiting for motion
    # ------------------------------------------------------------------------------------
    def _wait_idle(self, timeout: float | None) -> tuple[float, float]:
        s = self.settings
        if timeout is None:
            timeout = sum(m.timeout_s for m in self._queue) or s.command_timeout_s
        start = time.monotonic()
        deadline = start + timeout
        grace = max(3 * s.poll_interval_s, 0.15)
        seen = self._status_seq
        hold_since: float | None = None
        idle_wrong_since: float | None = None
        next_poll = start
        last_answer = start
        while True:
            self._check_async()
            self._raise_ticket_errors()
            now = time.monotonic()
            if self._status_seq != seen:
                seen = self._status_seq
                last_answer = now
                rep = self._status
                assert rep is not None
                if rep.state is gp.MachineState.HOLD or rep.state is gp.MachineState.DOOR:
                    if hold_since is None:
                        hold_since = now
                    elif now - hold_since > s.hold_timeout_s:
                        raise StageTimeoutError(
                            f"stage on {self.port} held (feed hold) for more than "
                            f"{s.hold_timeout_s:.0f} s; resume() or stop()", port=self.port)
                elif hold_since is not None:
                    deadline += now - hold_since           # a hold pauses the clock
                    hold_since = None
                if rep.state is gp.MachineState.ALARM:
                    self._drain(0.05)                     # the ALARM line may be in transit
                    self._check_async()
                    self._handle_alarm(None, f"the controller is in alarm state ({rep.raw}) "
                                             "but its ALARM message was lost")
                if rep.state is gp.MachineState.IDLE:
                    done = self._idle_check(rep, now, idle_wrong_since, grace)
                    if done is not None:
                        return done
                    idle_wrong_since = idle_wrong_since or now
                else:
                    idle_wrong_since = None
            if hold_since is not None:
                deadline = max(deadline, now + s.poll_interval_s)
            if now >= deadline:
                silent = now - last_answer
                why = (f"the controller has not answered status requests for {silent:.1f} s "
                       "(stalled or disconnected?)" if silent > 3 * s.poll_interval_s + 0.2
                       else f"last status {self._status.raw if self._status else '-'}")
                raise StageTimeoutError(
                    f"stage on {self.port} did not reach {_fmt_xy(self._target)} within "
                    f"{timeout:.1f} s: {why}", port=self.port)
            if now >= next_poll:
                self._link.write(gp.cmd_status_query())
                next_poll = self._next_poll(now)
            self._pump(min(deadline, next_poll))

    def _next_poll(self, now: float) -> float:
        """Status queries at the steady rate while a move runs, one lined up just before its
        computed end and then at `arrival_poll_s`, so arrival is seen within ~20 ms without
        querying fast for the whole move."""
        s = self.settings
        near = self._arrival - s.arrival_poll_s
        if near <= now <= self._arrival + 1.0:  # long past the computed end: steady again
            return now + s.arrival_poll_s
        return min(now + s.poll_interval_s, near) if now < near else now + s.poll_interval_s

    def _idle_check(self, rep: gp.StatusReport, now: float, since: float | None,
                    grace: float) -> tuple[float, float] | None:
        """Idle: done at the target with everything acknowledged; recover lost acks; raise
        when the stage rests somewhere else."""
        _, wpos, _ = rep.resolve(self._wco)
        if wpos is None:
            return None                                   # WCO not known yet: poll again
        target = self._target
        at = target is None or math.hypot(wpos[0] - target[0], wpos[1] - target[1]) <= (
            self.settings.position_tolerance_mm)
        waited = since is not None and now - since >= grace
        if at and self._streamer.pending == 0:
            return self._finish_wait((wpos[0], wpos[1]))
        if at and waited:
            lost = self._streamer.clear()
            for ticket, _ in lost:
                self._results[ticket] = _LOST
            self.lost_replies += len(lost)
            log.warning("GRBL on %s: %d acknowledgement(s) lost; the stage is idle at the "
                        "target, stream re-synchronised", self.port, len(lost))
            return self._finish_wait((wpos[0], wpos[1]))
        if not at and waited and since is not None and (
                self._streamer.pending == 0 or now - since >= self.settings.command_timeout_s):
            self._queue.clear()
            self._target = None
            raise StageMotionError(
                f"stage on {self.port} stopped at {_fmt_xy(wpos)} instead of "
                f"{_fmt_xy(target)} (state Idle; {self._streamer.pending} command(s) "
                "unacknowledged)", port=self.port)
        return None

    def _finish_wait(self, pos: tuple[float, float]) -> tuple[float, float]:
        for m in self._queue:
            self._results.pop(m.ticket, None)
        self._queue.clear()
        return pos  # settling is the scan plan's (rig.scan): slept once, where frames need it

    def _raise_ticket_errors(self) -> None:
        for m in list(self._queue):
            res = self._results.get(m.ticket)
            if isinstance(res, gp.ErrorReply):
                self._queue.remove(m)
                self._results.pop(m.ticket, None)
                self._target = None
                raise self._command_error(m.line, res)
            if res is _RESET:
                self._queue.clear()
                self._target = None
                self._check_async()
                raise StageConnectionError(
                    f"GRBL on {self.port} reset before the move to {_fmt_xy(m.target)} was "
                    "done", port=self.port)

    # ------------------------------------------------------------------------------------
    # commands and the character-counting stream
    # ------------------------------------------------------------------------------------
    def _send(self, line: bytes, deadline: float) -> int:
        while not self._streamer.can_send(line):
            self._check_async()
            if time.monotonic() >= deadline:
                self._resync()
                if not self._streamer.can_send(line):
                    raise StageTimeoutError(
                        f"GRBL on {self.port} stopped acknowledging commands (RX buffer "
                        "full)", port=self.port)
                break
            self._pump(deadline)
        ticket = self._streamer.sent(line)
        self._link.write(line)
        return ticket

    def _command(self, line: bytes, timeout: float,
                 verify: Callable[[gp.StatusReport], bool] | None = None) -> None:
        deadline = time.monotonic() + timeout
        ticket = self._send(line, deadline)
        try:
            self._wait_ticket(ticket, deadline, line=line)
        except _AckTimeout:
            st = self._resync()
            counted = self._results.pop(ticket, None) is _LOST
            text = line.decode().strip()
            if verify is not None and verify(st):
                self.lost_replies += 0 if counted else 1
                log.warning("GRBL on %s: reply to %r lost; status shows it took effect",
                            self.port, text)
                return
            raise StageTimeoutError(
                f"no reply to {text!r} from GRBL on {self.port} within {timeout:.1f} s (reply "
                f"lost or garbled?); stream re-synchronised, controller state {st.raw}",
                port=self.port) from None

    def _wait_ticket(self, ticket: int, deadline: float, poll_status: bool = False,
                     line: bytes = b"") -> None:
        next_poll = time.monotonic() + self.settings.poll_interval_s
        while ticket not in self._results:
            self._check_async()
            now = time.monotonic()
            if now >= deadline:
                raise _AckTimeout()
            if poll_status and now >= next_poll:
                self._link.write(gp.cmd_status_query())
                next_poll = now + max(self.settings.poll_interval_s, 0.1)
            self._pump(min(deadline, next_poll) if poll_status else deadline)
        res = self._results.pop(ticket)
        if isinstance(res, gp.ErrorReply):
            raise self._command_error(line or b"(command)", res)
        if res is _RESET:
            self._check_async()
            raise StageConnectionError(f"GRBL on {self.port} reset before acknowledging the "
                                       "command", port=self.port)

    def _command_error(self, line: bytes, reply: gp.ErrorReply) -> StageError:
        text = line.decode(errors="replace").strip()
        if reply.code == 9:
            return StageAlarmError(
                f"GRBL on {self.port} refused {text!r}: {reply.describe()} The controller is "
                "locked: home() (or unlock() if the position is known good) first.",
                code=None, controller_text=reply.describe(), port=self.port)
        return StageCommandError(f"GRBL on {self.port} rejected {text!r}: {reply.describe()}",
                                 code=reply.code, controller_text=reply.describe(),
                                 command=text, port=self.port)

    def _resync(self) -> gp.StatusReport:
        """After a missing reply: prove the controller alive, let it finish what is buffered,
        then forget acknowledgements that can no longer come."""
        st = self._query_status(self.settings.command_timeout_s)
        self._drain(max(3 * self.settings.poll_interval_s, 0.15))
        st = self._status or st
        if self._streamer.pending and st.state in (gp.MachineState.IDLE, gp.MachineState.ALARM):
            lost = self._streamer.clear()
            for ticket, _ in lost:
                self._results[ticket] = _LOST
            self.lost_replies += len(lost)
            log.warning("GRBL on %s: re-synchronised, %d acknowledgement(s) lost", self.port,
                        len(lost))
        return st

    # ------------------------------------------------------------------------------------
    # status
    # ------------------------------------------------------------------------------------
    def _query_status(self, timeout: float, need_wco: bool = False) -> gp.StatusReport:
        start = time.monotonic()
        deadline = start + timeout
        retry = max(timeout / 4, self.settings.poll_interval_s)
        seq = self._status_seq
        next_send = start
        while True:
            if self._status_seq != seq:
                rep = self._status
                assert rep is not None
                if not need_wco or rep.resolve(self._wco)[1] is not None:
                    return rep
                seq = self._status_seq
                next_send = time.monotonic()       # WCO comes every few reports: ask again
            now = time.monotonic()
            if now >= deadline:
                if self._critical_since is not None:
                    raise StageAlarmError(
                        f"GRBL on {self.port}: critical alarm (hard or soft limit): reset "
                        "required; the controller answers nothing until it is reset "
                        "(reset() or power-cycle), then home()", code=None,
                        controller_text="critical alarm", recovered=False, port=self.port)
                raise StageTimeoutError(
                    f"no status report from GRBL on {self.port} within {timeout:.1f} s: the "
                    "controller stopped answering (stalled, disconnected, or busy in a "
                    "bootloader)", port=self.port)
            if now >= next_send:
                self._link.write(gp.cmd_status_query())
                next_send = now + retry
            self._pump(min(deadline, next_send))

    def _to_stage_status(self, rep: gp.StatusReport, strict: bool = True) -> StageStatus:
        _, wpos, _ = rep.resolve(self._wco)
        if wpos is None:
            if strict:
                raise StageProtocolError(f"GRBL on {self.port} did not report its work "
                                         "offset (WCO)", port=self.port)
            wpos = (math.nan, math.nan, math.nan)
        return StageStatus(_STATE_MAP[rep.state], wpos[0], wpos[1], rep.raw)

    def _status_xy(self) -> tuple[float, float] | None:
        if self._status is None:
            return None
        _, wpos, _ = self._status.resolve(self._wco)
        return None if wpos is None else (wpos[0], wpos[1])

    def _current_xy(self) -> tuple[float, float]:
        rep = self._query_status(self.settings.command_timeout_s, need_wco=True)
        return self._to_stage_status(rep).position

    def _speed(self, speed: float | None) -> float:
        if speed is None:
            return self._eff_speed
        if not (math.isfinite(speed) and speed > 0):
            raise StageLimitError(f"speed must be a positive number of mm/s, got {speed}",
                                  port=self.port)
        return min(speed, self._eff_speed)

    # ------------------------------------------------------------------------------------
    # bytes
    # ------------------------------------------------------------------------------------
    def _pump(self, deadline: float, sink: bytearray | None = None) -> bool:
        """Read until at least one line arrived or ``deadline``; dispatch every line."""
        got = False
        while True:
            data = self._link.read()
            if data:
                if sink is not None:
                    sink += data
                for line in self._splitter.feed(data):
                    self._dispatch(line)
                    got = True
                if got:
                    return True
            if time.monotonic() >= deadline:
                return got

    def _drain(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self._pump(deadline)

    def _dispatch(self, raw: bytes) -> None:
        msg = gp.parse_line(raw)
        if msg is None:
            return
        if isinstance(msg, gp.Ok | gp.ErrorReply):
            acked = self._streamer.acknowledged()
            if acked is None:
                self.stray_replies += 1
                log.debug("GRBL on %s: stray %r", self.port, raw)
            else:
                self._results[acked[0]] = msg
        elif isinstance(msg, gp.StatusReport):
            if msg.wco is not None:
                self._wco = msg.wco
            self._status = msg
            self._status_seq += 1
            self._status_time = time.monotonic()
        elif isinstance(msg, gp.AlarmReply):
            log.warning("GRBL on %s: %s", self.port, msg.describe())
            self._alarm = msg
            if msg.code in gp.CRITICAL_ALARMS:
                self._critical_since = time.monotonic()  # silent until reset from here
        elif isinstance(msg, gp.Greeting):
            self._greetings += 1
            self._critical_since = None
            self.firmware_version = msg.version
            for ticket, _ in self._streamer.clear():
                self._results[ticket] = _RESET
            self._wco = None                      # G92 is cleared by a reset
            if not (self._expect_greeting or self._alarm is not None or self._recovering):
                log.warning("GRBL on %s restarted unexpectedly", self.port)
                self._unexpected_reset = True
        elif isinstance(msg, gp.Message):
            self.messages.append(msg.text)
            log.info("GRBL on %s: [MSG:%s]", self.port, msg.text)
        elif isinstance(msg, gp.Feedback | gp.Setting):
            if self._collect is not None:
                self._collect.append(msg)
        elif isinstance(msg, gp.Garbage):
            self.garbage_lines += 1
            log.warning("GRBL on %s: skipped line noise %r", self.port, msg.raw[:40])


def _fmt_xy(p: tuple[float, ...] | None) -> str:
    return "(unknown)" if p is None else f"({p[0]:.3f}, {p[1]:.3f}) mm"
