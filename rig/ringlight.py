"""Ring-light controller driver (protocol v1, docs/ring-light-protocol.md) over pyserial.

Strict request/reply: one command in flight, each reply matched by its command name. Every
read has a deadline. Faults are handled as follows:

* a reply that does not come (lost, stalled device) or comes garbled: re-synchronise (end any
  partial line, flush, ``ID`` round trip) and retry once -- every command but ``TRIG`` is
  idempotent. For ``TRIG`` the driver asks ``STATUS`` whether the step fired and either takes
  that as the answer or triggers again, so a step is never skipped or fired twice;
* ``ERR <code>`` replies become :class:`RingLightCommandError` (``BUSY`` as its subclass
  :class:`RingLightBusyError`) naming the command and the firmware's reason;
* a firmware restart (``EV READY`` mid-session, e.g. a brown-out) re-applies the levels and
  timing; an armed sequence is lost, which raises :class:`RingLightResetError`;
* a vanished port raises :class:`RingLightConnectionError`.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from errors import ConnectionLost, DeviceError, DeviceTimeout, ProtocolError
from rig import ringlight_protocol as rp
from rig.ringlight_protocol import Command, ErrorCode, Mode
from rig.serial_link import LinkErrors, SerialLink

log = logging.getLogger(__name__)


_T = TypeVar("_T")


class RingLightError(DeviceError):
    def __init__(self, message: str, *, port: str | None = None) -> None:
        super().__init__(message)
        self.port = port


class RingLightConnectionError(RingLightError, ConnectionLost):
    """Port missing, cable pulled, or not a ring light at the other end."""


class RingLightResetError(RingLightConnectionError):
    """The controller restarted; settings were re-applied but an armed sequence was lost."""


class RingLightTimeoutError(RingLightError, DeviceTimeout):
    """No (usable) reply within the command timeout, even after a re-sync and retry."""


class RingLightProtocolError(RingLightError, ProtocolError):
    """Replies that make no sense: garbled twice, wrong protocol version, step mismatch."""


class RingLightStateError(RingLightError):
    """Not open, or a call that needs an armed sequence."""


class RingLightCommandError(RingLightError):
    """The controller answered ``ERR <code> <NAME> <detail>``."""

    def __init__(self, message: str, *, code: int, name: str, detail: str, command: str,
                 port: str | None = None) -> None:
        super().__init__(message, port=port)
        self.code = code
        self.name = name
        self.detail = detail
        self.command = command


class RingLightBusyError(RingLightCommandError):
    """``ERR 5 BUSY``: a sequence step is still running."""


@dataclass
class RingLightSettings:
    """Field names match ``[light]`` of the station file where they exist."""

    port: str
    serial_number: str = ""               # USB adapter's: found again after a re-plug
    baudrate: int = rp.BAUDRATE
    facet_levels: tuple[int, ...] = (rp.DEFAULT_LEVEL,) * rp.NUM_FACETS
    settle_us: int = rp.DEFAULT_SETTLE_US
    trigger_pulse_us: int = rp.DEFAULT_PULSE_US
    hold_us: int = rp.DEFAULT_HOLD_US     # >= camera exposure: LEDs stay lit that long
    command_timeout_s: float = 1.0
    open_timeout_s: float = 3.0           # covers the bootloader after the DTR reset
    apply_on_open: bool = True            # OFF + LEVELS + TIMING right after connecting

    @classmethod
    def from_config(cls, light: Any, port: str | None = None, **overrides: Any
                    ) -> RingLightSettings:
        names = {f.name for f in dataclasses.fields(cls)}
        values = {n: getattr(light, n) for n in names if hasattr(light, n)}
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
        if port is not None:
            values["port"] = port
        values.update(overrides)
        return cls(**values)


@dataclass(frozen=True)
class TriggerResult:
    step: int
    state: int
    time: float          # time.monotonic() when the reply arrived (rising edge ~ settle later)


class _NoReply(Exception):
    pass


class _Garbled(Exception):
    def __init__(self, raw: bytes) -> None:
        super().__init__(raw)
        self.raw = raw


class RingLight:
    """12-facet / 6-state ring illuminator with camera trigger output."""

    def __init__(self, settings: RingLightSettings, *,
                 serial_factory: Callable[..., Any] | None = None) -> None:
        if len(settings.facet_levels) != rp.NUM_FACETS:
            raise ValueError(f"facet_levels needs {rp.NUM_FACETS} values")
        rp.check_timing(settings.settle_us, settings.trigger_pulse_us, settings.hold_us)
        self.settings = settings
        self._link = SerialLink(
            settings.port, settings.baudrate, name="the ring light", factory=serial_factory,
            serial_number=settings.serial_number,
            errors=LinkErrors(RingLightConnectionError, RingLightStateError,
                              RingLightTimeoutError),
            open_failure="cannot open the ring-light port {port!r}: {exc}. Check [light] port "
                         "in the station config (`main.py devices` lists serial ports).")
        self._lock = threading.RLock()
        self._splitter = rp.LineSplitter()
        self._pending: deque[bytes] = deque()
        self.identity: rp.Identity | None = None
        self.events: deque[rp.EventLine] = deque(maxlen=200)
        self.garbage_lines = 0
        self.resyncs = 0
        self._levels = tuple(settings.facet_levels)
        self._timing = rp.Timing(settings.settle_us, settings.trigger_pulse_us, settings.hold_us)
        self._sequence: tuple[int, ...] | None = None
        self._fired = 0
        self._busy_until = 0.0
        self._rebooted = False

    # -- lifecycle -----------------------------------------------------------------------
    @property
    def port(self) -> str:
        return self.settings.port

    @property
    def is_open(self) -> bool:
        return self._link.is_open

    def __enter__(self) -> RingLight:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open(self) -> None:
        with self._lock:
            if self._link.is_open:
                return
            self._link.open()
            self._splitter.clear()
            self._pending.clear()
            self._rebooted = False
            try:
                self._connect()
                if self.settings.apply_on_open:
                    self._apply_settings()
            except BaseException:
                self._link.close()
                raise

    def close(self) -> None:
        with self._lock:
            if self._link.is_open and self._link.lost_reason is None:
                try:                                  # leave the bench dark
                    self._request(rp.cmd_off(), Command.OFF, self.settings.command_timeout_s)
                except (RingLightError, _NoReply, _Garbled) as exc:
                    log.debug("ring light OFF on close failed: %s", exc)
            self._link.close()

    def _connect(self) -> None:
        """Probe with ID until the controller answers (it may be in its bootloader)."""
        start = time.monotonic()
        deadline = start + self.settings.open_timeout_s
        received = bytearray()
        reply = None
        next_probe = start
        while reply is None:
            now = time.monotonic()
            if now >= deadline:
                seen = bytes(received[:60])
                what = (f"it sent {seen!r}" if received else "it sent nothing")
                if received and received.replace(b"\n", b"").replace(b"ID", b"") == b"":
                    what = "it echoed our own bytes (a loopback, not the ring light)"
                raise RingLightConnectionError(
                    f"no ring-light controller answered on {self.port} at "
                    f"{self.settings.baudrate} baud within {self.settings.open_timeout_s:.1f} s"
                    f": {what}. Check the port, cable and power.", port=self.port)
            if now >= next_probe:
                self._link.write(b"\n" + rp.cmd_id())      # '\n' ends any partial line first
                next_probe = now + 0.3
            raw = self._next_line(min(deadline, next_probe), received)
            msg = rp.parse_reply(raw) if raw is not None else None
            if isinstance(msg, rp.OkReply) and msg.command == Command.ID:
                reply = msg
            elif isinstance(msg, rp.EventLine) and msg.name == rp.Event.READY:
                next_probe = time.monotonic()         # booted just now: ask at once
        self._drain_quiet(0.05)          # answers to earlier probes
        self._rebooted = False
        ident = self._parsed(rp.parse_identity, reply)
        if ident.name != rp.DEVICE_NAME:
            raise RingLightProtocolError(
                f"device on {self.port} identifies as {ident.name!r}, not {rp.DEVICE_NAME!r}",
                port=self.port)
        if ident.protocol != rp.PROTOCOL_VERSION or ident.facets != rp.NUM_FACETS:
            raise RingLightProtocolError(
                f"ring light on {self.port} runs firmware {ident.firmware} with protocol "
                f"{ident.protocol} and {ident.facets} facets; this driver needs protocol "
                f"{rp.PROTOCOL_VERSION} with {rp.NUM_FACETS} facets: flash "
                "firmware/ringlight/ringlight.ino", port=self.port)
        self.identity = ident

    def _apply_settings(self) -> None:
        self._transact(rp.cmd_off(), Command.OFF)
        self._transact(rp.cmd_levels(self._levels), Command.LEVELS)
        tm = self._timing
        self._transact(rp.cmd_timing(tm.settle_us, tm.pulse_us, tm.hold_us), Command.TIMING)
        self._sequence = None
        self._fired = 0

    # -- commands ------------------------------------------------------------------------
    def identify(self) -> rp.Identity:
        return self._parsed(rp.parse_identity, self._transact(rp.cmd_id(), Command.ID))

    def status(self) -> rp.LightStatus:
        return self._parsed(rp.parse_status, self._transact(rp.cmd_status(), Command.STATUS))

    def _parsed(self, parse: Callable[[rp.OkReply], _T], reply: rp.OkReply) -> _T:
        """A reply's fields, or RingLightProtocolError when they make no sense."""
        try:
            return parse(reply)
        except ValueError as exc:
            raise RingLightProtocolError(f"ring light on {self.port}: {exc}; check the cable "
                                         "and the firmware", port=self.port) from None

    def _ints(self, reply: rp.OkReply, count: int, start: int = 0) -> tuple[int, ...]:
        """`count` whole numbers from the reply's arguments (from `start`), or a protocol
        error: a reply that reads as OK but carries wrong numbers must not be trusted."""
        args = reply.args[start:]
        values = [rp.parse_uint(a) for a in args[:count]]
        if len(args) < count or any(v is None for v in values):
            raise RingLightProtocolError(
                f"ring light on {self.port}: reply {reply} should carry {count} whole numbers; "
                "check the cable and the firmware", port=self.port)
        return tuple(v for v in values if v is not None)

    def set_level(self, facet: int, level: int) -> None:
        reply = self._transact(rp.cmd_level(facet, level), Command.LEVEL)
        levels = list(self._levels)
        levels[facet] = self._ints(reply, 1, start=1)[0]
        self._levels = tuple(levels)

    def set_levels(self, levels: Sequence[int]) -> None:
        reply = self._transact(rp.cmd_levels(list(levels)), Command.LEVELS)
        self._levels = self._ints(reply, rp.NUM_FACETS)

    def levels(self) -> tuple[int, ...]:
        return self._ints(self._transact(rp.cmd_levels(), Command.LEVELS), rp.NUM_FACETS)

    def set_timing(self, settle_us: int, pulse_us: int, hold_us: int) -> rp.Timing:
        """Returns the timing the firmware will produce (rounded up to its 50 us tick)."""
        reply = self._transact(rp.cmd_timing(settle_us, pulse_us, hold_us), Command.TIMING)
        self._timing = rp.Timing(*self._ints(reply, 3))
        return self._timing

    def timing(self) -> rp.Timing:
        return rp.Timing(*self._ints(self._transact(rp.cmd_timing(), Command.TIMING), 3))

    def select_state(self, state: int) -> None:
        """Light state k (facets k and k+6) until OFF, for focusing and manual inspection."""
        self._transact(rp.cmd_state(state), Command.STATE)

    def all_off(self) -> None:
        self._transact(rp.cmd_off(), Command.OFF)
        self._sequence = None

    def arm(self, states: int | Sequence[int]) -> tuple[int, ...]:
        """Arm a sequence: ``6`` means states 0..5, or give the states in order."""
        seq = rp.default_sequence(states) if isinstance(states, int) else tuple(states)
        self._wait_step_done()
        reply = self._transact(rp.cmd_arm(seq), Command.ARM)
        armed = self._ints(reply, len(seq), start=1)
        if armed != seq:
            raise RingLightProtocolError(f"ring light on {self.port} armed {armed}, asked for "
                                         f"{seq}", port=self.port)
        self._sequence = armed
        self._fired = 0
        return self._sequence

    def disarm(self) -> None:
        self._transact(rp.cmd_disarm(), Command.DISARM)
        self._sequence = None

    def trigger(self) -> TriggerResult:
        """Fire the next step of the armed sequence (software trigger).

        Waits first if the previous step's LEDs are still lit (known from the timing), so
        back-to-back calls do not hit ``BUSY``.
        """
        with self._lock:
            self._link.require_open()
            if self._sequence is None:
                raise RingLightStateError("trigger() without an armed sequence: call arm() "
                                          "first", port=self.port)
            if self._fired >= len(self._sequence):
                raise RingLightStateError(f"all {len(self._sequence)} steps already fired; "
                                          "arm() again", port=self.port)
            self._poll_unsolicited()
            self._check_reboot()
            self._wait_step_done()
            expected = self._fired
            try:
                reply = self._trig_recovering(expected)
            except RingLightBusyError:          # the board's clock ran a little behind ours
                self.wait_ready(self._step_s() + self.settings.command_timeout_s)
                reply = self._trig_recovering(expected)
            if reply is None:                   # reply lost, but STATUS shows it fired
                return self._fired_step(expected, self._sequence[expected])
            step, state = self._ints(reply, 2)
            if step != expected:
                raise RingLightProtocolError(
                    f"ring light on {self.port} fired step {step}, expected {expected}",
                    port=self.port)
            return self._fired_step(step, state)

    def _trig_recovering(self, expected: int) -> rp.OkReply | None:
        """TRIG; when its reply is lost or garbled, ask STATUS whether the step fired (None)
        or not (trigger once more) -- never skip a step, never fire one twice."""
        try:
            return self._request(rp.cmd_trig(), Command.TRIG, self.settings.command_timeout_s)
        except (_NoReply, _Garbled) as exc:
            log.warning("ring light on %s: TRIG reply %s; checking STATUS", self.port,
                        "lost" if isinstance(exc, _NoReply) else "garbled")
        self._resync()
        st = self.status()
        if st.step == expected + 1:
            return None
        if st.step != expected:
            raise RingLightProtocolError(
                f"ring light on {self.port} reports step {st.step} of {st.length} "
                f"({st.mode.value}) after a lost TRIG reply; expected {expected}",
                port=self.port)
        if st.mode == Mode.BUSY:                # the lost reply was ERR BUSY
            self.wait_ready(self._step_s() + self.settings.command_timeout_s)
        try:
            return self._request(rp.cmd_trig(), Command.TRIG, self.settings.command_timeout_s)
        except (_NoReply, _Garbled):
            raise RingLightTimeoutError(
                f"no usable reply to TRIG from the ring light on {self.port}, twice",
                port=self.port) from None

    def _fired_step(self, step: int, state: int) -> TriggerResult:
        self._fired = step + 1
        now = time.monotonic()
        self._busy_until = now + self._step_s() + 0.002   # + the board's own latency
        self._check_reboot()
        return TriggerResult(step, state, now)

    @property
    def can_run(self) -> bool:
        """The firmware sequences a whole stack itself (RUN, firmware 1.1 and later)."""
        ident = self.identity
        if ident is None:
            return False
        try:
            version = tuple(int(v) for v in ident.firmware.split(".")[:2])
        except ValueError:
            return False
        return version >= rp.RUN_SINCE_FIRMWARE

    def run(self, period_s: float) -> TriggerResult:
        """Fire every remaining armed step from the board's timer, one every `period_s` (at
        least one step, settle + hold; rounded up to its tick), without a host round trip per
        frame. Returns the first step; `step_done_at` is when the last one's LEDs go off."""
        with self._lock:
            self._link.require_open()
            if self._sequence is None or self._fired >= len(self._sequence):
                raise RingLightStateError("run() without an armed sequence (or with every step "
                                          "fired): call arm() first", port=self.port)
            if not self.can_run:
                raise RingLightStateError(
                    f"the ring light on {self.port} runs firmware "
                    f"{self.identity.firmware if self.identity else '?'}, which has no RUN "
                    "command: flash firmware/ringlight/ringlight.ino (1.1 or later) or trigger "
                    "step by step", port=self.port)
            self._poll_unsolicited()
            self._check_reboot()
            self._wait_step_done()
            step_us = self._timing.settle_us + self._timing.hold_us
            period_us = rp.round_to_tick(max(step_us, int(math.ceil(period_s * 1e6))))
            expected, left = self._fired, len(self._sequence) - self._fired
            try:
                self._request(rp.cmd_run(period_us), Command.RUN,
                              self.settings.command_timeout_s)
            except (_NoReply, _Garbled):
                log.warning("ring light on %s: RUN reply lost; checking STATUS", self.port)
                self._resync()
                st = self.status()
                if st.step == expected and st.mode == Mode.ARMED:  # it never arrived
                    self._request(rp.cmd_run(period_us), Command.RUN,
                                  self.settings.command_timeout_s)
                elif st.step <= expected:
                    raise RingLightProtocolError(
                        f"ring light on {self.port} reports step {st.step} of {st.length} "
                        f"({st.mode.value}) after a lost RUN reply", port=self.port) from None
            now = time.monotonic()
            self._fired = len(self._sequence)
            self._busy_until = now + (left - 1) * period_us * 1e-6 + self._step_s() + 0.002
            self._check_reboot()
            return TriggerResult(expected, self._sequence[expected], now)

    def _wait_step_done(self) -> None:
        """Until the last fired step's LEDs are off (known from the timing), so the next
        command is not refused with BUSY."""
        wait = self._busy_until - time.monotonic()
        if wait > 0:
            time.sleep(wait)

    @property
    def step_done_at(self) -> float:
        """time.monotonic() by which the last fired step's LEDs are off (its exposure is over,
        the stage may move); in the past when no step is running."""
        return self._busy_until

    def _step_s(self) -> float:
        return (self._timing.settle_us + self._timing.hold_us) * 1e-6

    def wait_ready(self, timeout: float | None = None) -> rp.LightStatus:
        """Poll STATUS until no step is running."""
        timeout = timeout if timeout is not None else self._step_s() + 1.0
        deadline = time.monotonic() + timeout
        while True:
            st = self.status()
            if st.mode != Mode.BUSY:
                return st
            if time.monotonic() >= deadline:
                raise RingLightTimeoutError(f"ring light on {self.port} still BUSY after "
                                            f"{timeout:.2f} s", port=self.port)
            time.sleep(min(0.005, max(deadline - time.monotonic(), 0)))

    def read_events(self, timeout: float = 0.0) -> list[rp.EventLine]:
        """Collect unsolicited lines (hardware triggers, DONE, OVERRUN) for up to ``timeout``."""
        with self._lock:
            self._link.require_open()
            deadline = time.monotonic() + timeout
            while True:
                raw = self._next_line(deadline)
                if raw is None:
                    break
                self._dispatch_unsolicited(raw)
            out = list(self.events)
            self.events.clear()
            return out

    # -- transport -----------------------------------------------------------------------
    def _transact(self, line: bytes, expect: str) -> rp.OkReply:
        """Request with one re-sync and retry (idempotent commands only)."""
        with self._lock:
            self._link.require_open()
            self._poll_unsolicited()
            self._check_reboot()
            try:
                reply = self._request(line, expect, self.settings.command_timeout_s)
            except (_NoReply, _Garbled) as first:
                why = "no reply" if isinstance(first, _NoReply) else f"garbled reply {first.raw!r}"
                log.warning("ring light on %s: %s to %r; re-synchronising and retrying",
                            self.port, why, line.strip())
                self._resync()
                try:
                    reply = self._request(line, expect, self.settings.command_timeout_s)
                except _NoReply:
                    raise RingLightTimeoutError(
                        f"no reply to {line.decode().strip()!r} from the ring light on "
                        f"{self.port} within {self.settings.command_timeout_s:.1f} s (also after "
                        "a re-sync and retry)", port=self.port) from None
                except _Garbled as exc:
                    raise RingLightProtocolError(
                        f"garbled replies from the ring light on {self.port} ({exc.raw!r}); "
                        "check the baud rate and the cable", port=self.port) from None
            self._check_reboot()
            return reply

    def _request(self, line: bytes, expect: str, timeout: float) -> rp.OkReply:
        self._link.write(line)
        deadline = time.monotonic() + timeout
        while True:
            raw = self._next_line(deadline)
            if raw is None:
                raise _NoReply()
            msg = rp.parse_reply(raw)
            if msg is None or isinstance(msg, rp.EventLine):
                if msg is not None:
                    self._on_event(msg)
                continue
            if isinstance(msg, rp.Garbage):
                self.garbage_lines += 1
                raise _Garbled(msg.raw)
            if isinstance(msg, rp.ErrReply):
                self._check_reboot()          # an error from a freshly restarted board
                raise self._command_error(line, msg)
            if msg.command == expect:
                return msg
            log.debug("ring light on %s: stale %s ignored", self.port, msg)

    def _command_error(self, line: bytes, err: rp.ErrReply) -> RingLightCommandError:
        cls = RingLightBusyError if err.code == ErrorCode.BUSY else RingLightCommandError
        text = line.decode().strip()
        return cls(f"ring light on {self.port} refused {text!r}: {err.describe()}",
                   code=err.code, name=err.name, detail=err.detail, command=text,
                   port=self.port)

    def _resync(self) -> None:
        """End any partial line, drop whatever is buffered, and wait for a clean ID reply."""
        self.resyncs += 1
        self._link.write(b"\n")
        self._link.reset_input()
        self._splitter.clear()
        self._pending.clear()
        self._link.write(rp.cmd_id())
        deadline = time.monotonic() + self.settings.command_timeout_s
        while True:
            raw = self._next_line(deadline)
            if raw is None:
                raise RingLightTimeoutError(
                    f"the ring light on {self.port} does not answer (stalled, unpowered or "
                    f"disconnected?): no reply to ID within "
                    f"{self.settings.command_timeout_s:.1f} s", port=self.port)
            msg = rp.parse_reply(raw)
            if isinstance(msg, rp.EventLine):
                self._on_event(msg)
            elif isinstance(msg, rp.OkReply) and msg.command == Command.ID:
                self._drain_quiet(0.02)
                return

    def _on_event(self, ev: rp.EventLine) -> None:
        self.events.append(ev)
        if ev.name == rp.Event.READY:
            log.warning("ring light on %s restarted (EV READY)", self.port)
            self._rebooted = True

    def _poll_unsolicited(self) -> None:
        """Handle lines that arrived since the last command (events such as EV READY)."""
        data = self._link.read_waiting()
        if data:
            self._pending.extend(self._splitter.feed(data))
        while self._pending:
            self._dispatch_unsolicited(self._pending.popleft())

    def _dispatch_unsolicited(self, raw: bytes) -> None:
        msg = rp.parse_reply(raw)
        if isinstance(msg, rp.EventLine):
            self._on_event(msg)
        elif isinstance(msg, rp.Garbage):
            self.garbage_lines += 1

    def _check_reboot(self) -> None:
        if not self._rebooted:
            return
        self._rebooted = False
        had_sequence = self._sequence is not None
        self._sequence = None
        self._apply_settings()
        if had_sequence:
            raise RingLightResetError(
                f"the ring light on {self.port} restarted (power glitch?); levels and timing "
                "were re-applied but the armed sequence was lost: arm() again", port=self.port)
        log.warning("ring light on %s restarted; levels and timing re-applied", self.port)

    def _drain_quiet(self, quiet_s: float) -> None:
        """Read (and handle events) until nothing arrived for ``quiet_s``."""
        while True:
            raw = self._next_line(time.monotonic() + quiet_s)
            if raw is None:
                return
            self._dispatch_unsolicited(raw)

    def _next_line(self, deadline: float, sink: bytearray | None = None) -> bytes | None:
        """The next complete line, or None at the deadline."""
        while not self._pending:
            data = self._link.read()
            if data:
                if sink is not None:
                    sink += data
                self._pending.extend(self._splitter.feed(data))
            if not self._pending and time.monotonic() >= deadline:
                return None
        return self._pending.popleft()
