"""GRBL 1.1 serial protocol, sans-IO: bytes in, typed messages out, and bytes to send.

Nothing here touches a port or a clock, so every rule is unit-tested byte by byte
(tests/test_grbl_protocol.py) and shared by the driver (rig/grbl.py) and the emulator
(rig/sim/grbl_emulator.py). References: GRBL 1.1 "Interface" and "Commands" documentation, and
the error/alarm CSV tables shipped with the firmware (texts below are GRBL's own).
"""

from __future__ import annotations

import enum
import math
import re
from collections import deque
from dataclasses import dataclass, field

# --------------------------------------------------------------------------------------------
# Constants
# --------------------------------------------------------------------------------------------
RX_BUFFER_SIZE = 128          # serial RX ring buffer of an ATmega328p GRBL build
PLANNER_BLOCKS = 15           # BLOCK_BUFFER_SIZE 16, one kept free
LINE_BUFFER_SIZE = 80         # longest G-code line GRBL accepts (after removing spaces)
SUPPORTED_MAJOR_MINOR = "1.1"

RT_STATUS = b"?"              # real-time commands: act at once, never buffered or counted
RT_FEED_HOLD = b"!"
RT_CYCLE_START = b"~"
RT_SOFT_RESET = b"\x18"
REALTIME_BYTES = frozenset(b"?!~\x18") | frozenset(range(0x80, 0x100))

HOST_EOL = b"\n"              # what the host ends lines with
DEVICE_EOL = b"\r\n"          # what GRBL ends lines with

GREETING_TEMPLATE = "Grbl {version} ['$' for help]"
_GREETING_RE = re.compile(r"Grbl (\S+) \['\$' for help\]")

MSG_UNLOCK_HINT = "'$H'|'$X' to unlock"
MSG_RESET_TO_CONTINUE = "Reset to continue"
MSG_UNLOCKED = "Caution: Unlocked"

# Error codes: (short name, GRBL's description). From grbl doc/csv/error_codes_en_US.csv.
ERROR_CODES: dict[int, tuple[str, str]] = {
    1: ("Expected command letter",
        "G-code words consist of a letter and a value. Letter was not found."),
    2: ("Bad number format",
        "Missing the expected G-code word value or numeric value format is not valid."),
    3: ("Invalid statement", "Grbl '$' system command was not recognized or supported."),
    4: ("Value < 0", "Negative value received for an expected positive value."),
    5: ("Setting disabled", "Homing cycle failure. Homing is not enabled via settings."),
    6: ("Value < 3 usec", "Minimum step pulse time must be greater than 3usec."),
    7: ("EEPROM read fail. Using defaults",
        "An EEPROM read failed. Auto-restoring affected EEPROM to default values."),
    8: ("Not idle",
        "Grbl '$' command cannot be used unless Grbl is IDLE. Ensures smooth operation during "
        "a job."),
    9: ("G-code lock", "G-code commands are locked out during alarm or jog state."),
    10: ("Homing not enabled", "Soft limits cannot be enabled without homing also enabled."),
    11: ("Line overflow",
         "Max characters per line exceeded. Received command line was not executed."),
    12: ("Step rate > 30kHz",
         "Grbl '$' setting value cause the step rate to exceed the maximum supported."),
    13: ("Check Door", "Safety door detected as opened and door state initiated."),
    14: ("Line length exceeded",
         "Build info or startup line exceeded EEPROM line length limit. Line not stored."),
    15: ("Travel exceeded",
         "Jog target exceeds machine travel. Jog command has been ignored."),
    16: ("Invalid jog command", "Jog command has no '=' or contains prohibited g-code."),
    17: ("Setting disabled", "Laser mode requires PWM output."),
    20: ("Unsupported command", "Unsupported or invalid g-code command found in block."),
    21: ("Modal group violation",
         "More than one g-code command from same modal group found in block."),
    22: ("Undefined feed rate", "Feed rate has not yet been set or is undefined."),
    23: ("Invalid gcode ID:23", "G-code command in block requires an integer value."),
    24: ("Invalid gcode ID:24",
         "More than one g-code command that requires axis words found in block."),
    25: ("Invalid gcode ID:25", "Repeated g-code word found in block."),
    26: ("Invalid gcode ID:26",
         "No axis words found in block for g-code command or current modal state which "
         "requires them."),
    27: ("Invalid gcode ID:27", "Line number value is invalid."),
    28: ("Invalid gcode ID:28", "G-code command is missing a required value word."),
    29: ("Invalid gcode ID:29", "G59.x work coordinate systems are not supported."),
    30: ("Invalid gcode ID:30", "G53 only allowed with G0 and G1 motion modes."),
    31: ("Invalid gcode ID:31",
         "Axis words found in block when no command or current modal state uses them."),
    32: ("Invalid gcode ID:32", "G2 and G3 arcs require at least one in-plane axis word."),
    33: ("Invalid gcode ID:33", "Motion command target is invalid."),
    34: ("Invalid gcode ID:34", "Arc radius value is invalid."),
    35: ("Invalid gcode ID:35", "G2 and G3 arcs require at least one in-plane offset word."),
    36: ("Invalid gcode ID:36", "Unused value words found in block."),
    37: ("Invalid gcode ID:37",
         "G43.1 dynamic tool length offset is not assigned to configured tool length axis."),
    38: ("Invalid gcode ID:38", "Tool number greater than max supported value."),
}

# Alarm codes: (short name, GRBL's description). From grbl doc/csv/alarm_codes_en_US.csv.
ALARM_CODES: dict[int, tuple[str, str]] = {
    1: ("Hard limit",
        "Hard limit has been triggered. Machine position is likely lost due to sudden halt. "
        "Re-homing is highly recommended."),
    2: ("Soft limit",
        "Soft limit alarm. G-code motion target exceeds machine travel. Machine position "
        "retained. Alarm may be safely unlocked."),
    3: ("Abort during cycle",
        "Reset while in motion. Machine position is likely lost due to sudden halt. "
        "Re-homing is highly recommended."),
    4: ("Probe fail",
        "Probe fail. Probe is not in the expected initial state before starting probe cycle "
        "when G38.2 and G38.3 is not triggered and G38.4 and G38.5 is triggered."),
    5: ("Probe fail",
        "Probe fail. Probe did not contact the workpiece within the programmed travel for "
        "G38.2 and G38.4."),
    6: ("Homing fail", "Homing fail. The active homing cycle was reset."),
    7: ("Homing fail", "Homing fail. Safety door was opened during homing cycle."),
    8: ("Homing fail",
        "Homing fail. Pull off travel failed to clear limit switch. Try increasing pull-off "
        "setting or check wiring."),
    9: ("Homing fail",
        "Homing fail. Could not find limit switch within search distances. Try increasing max "
        "travel, decreasing pull-off distance, or check wiring."),
    10: ("Homing fail",
         "Homing fail. On dual axis machines, could not find the second limit switch for "
         "self-squaring."),
}

# Alarms after which re-homing restores a trustworthy position (homing failures are not in
# here: repeating a failed homing cycle would just fail again).
REHOMABLE_ALARMS = frozenset({1, 2, 3})
# Alarms that block everything but a soft reset ("[MSG:Reset to continue]").
CRITICAL_ALARMS = frozenset({1, 2})  # hard and soft limit: GRBL 1.1h then waits for a reset
ALARM_REPORT_DELAY_S = 0.5  # report.c: delay_ms(500) after every ALARM:N line


def error_text(code: int | None) -> str:
    """'error:9 G-code lock: G-code commands are locked out...' style text for messages."""
    if code is None:
        return "error (no code)"
    short, desc = ERROR_CODES.get(code, ("Unknown error", "Not in GRBL 1.1's error table."))
    return f"error:{code} {short}: {desc}"


def alarm_text(code: int | None) -> str:
    if code is None:
        return "ALARM (no code)"
    short, desc = ALARM_CODES.get(code, ("Unknown alarm", "Not in GRBL 1.1's alarm table."))
    return f"ALARM:{code} {short}: {desc}"


# --------------------------------------------------------------------------------------------
# Commands (host -> GRBL)
# --------------------------------------------------------------------------------------------
def fmt_number(value: float, decimals: int = 3) -> str:
    """Shortest fixed-point text GRBL parses exactly: 10 -> '10', 0.1234 -> '0.123'."""
    if not math.isfinite(value):
        raise ValueError(f"not a finite number: {value}")
    text = f"{value:.{decimals}f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def cmd_line(text: str) -> bytes:
    """One buffered G-code or '$' line, validated and newline-terminated."""
    if "\n" in text or "\r" in text:
        raise ValueError("a GRBL line must not contain line breaks")
    data = text.encode("ascii")
    if any(b in REALTIME_BYTES for b in data):
        raise ValueError(f"{text!r} contains a real-time command character")
    if len(text.replace(" ", "")) > LINE_BUFFER_SIZE - 1:
        raise ValueError(f"{text!r} exceeds GRBL's {LINE_BUFFER_SIZE - 1} character line limit")
    return data + HOST_EOL


def cmd_move(
    x: float | None = None, y: float | None = None, *, feed_mm_min: float | None = None,
    rapid: bool = False, absolute: bool = True,
) -> bytes:
    """'G21 G90 G1 X.. Y.. F..' -- self-contained (units and distance mode in every block), so a
    reset that restored other modal defaults can never turn a move into inches or relative."""
    if x is None and y is None:
        raise ValueError("a move needs at least one axis")
    words = ["G21", "G90" if absolute else "G91", "G0" if rapid else "G1"]
    if x is not None:
        words.append("X" + fmt_number(x))
    if y is not None:
        words.append("Y" + fmt_number(y))
    if not rapid:
        if feed_mm_min is None or not feed_mm_min > 0:
            raise ValueError("a G1 move needs a positive feed rate (mm/min)")
        words.append("F" + fmt_number(feed_mm_min, 1))
    elif feed_mm_min is not None:
        raise ValueError("G0 moves at the controller's max rates; do not give a feed")
    return cmd_line(" ".join(words))


def cmd_jog(x: float | None = None, y: float | None = None, *, feed_mm_min: float,
            absolute: bool = False) -> bytes:
    """'$J=G21 G91 X.. Y.. F..': a jog, which GRBL plans like G1 but may cancel at once
    (0x85) and refuses beyond travel (error:15) instead of raising a soft-limit alarm. The
    modal state of the g-code parser is not changed by it."""
    if x is None and y is None:
        raise ValueError("a jog needs at least one axis")
    if not feed_mm_min > 0:
        raise ValueError("a jog needs a positive feed rate (mm/min)")
    words = ["G21", "G90" if absolute else "G91"]
    if x is not None:
        words.append("X" + fmt_number(x))
    if y is not None:
        words.append("Y" + fmt_number(y))
    words.append("F" + fmt_number(feed_mm_min, 1))
    return cmd_line("$J=" + " ".join(words))


def cmd_jog_cancel() -> bytes:
    """Realtime 0x85: decelerate any jog to a stop and flush the queued jogs (Jog state only)."""
    return bytes([0x85])


def cmd_sync() -> bytes:
    """'G4 P0': acknowledged once the planner is empty; after a jog cancel it proves the
    parser position has been synchronised to where the stage stopped."""
    return cmd_line("G4 P0")


def cmd_home() -> bytes:
    return cmd_line("$H")


def cmd_unlock() -> bytes:
    return cmd_line("$X")


def cmd_settings() -> bytes:
    return cmd_line("$$")


def cmd_build_info() -> bytes:
    return cmd_line("$I")


def cmd_set_work_offset(x: float, y: float) -> bytes:
    """Set G54 so that the *current machine origin* maps as given (G10 L2 P1: absolute offset)."""
    return cmd_line(f"G10 L2 P1 X{fmt_number(x)} Y{fmt_number(y)}")


def cmd_status_query() -> bytes:
    return RT_STATUS


def cmd_feed_hold() -> bytes:
    return RT_FEED_HOLD


def cmd_cycle_start() -> bytes:
    return RT_CYCLE_START


def cmd_soft_reset() -> bytes:
    return RT_SOFT_RESET


# --------------------------------------------------------------------------------------------
# Replies (GRBL -> host)
# --------------------------------------------------------------------------------------------
class MachineState(enum.Enum):
    IDLE = "Idle"
    RUN = "Run"
    HOLD = "Hold"
    JOG = "Jog"
    ALARM = "Alarm"
    DOOR = "Door"
    CHECK = "Check"
    HOME = "Home"
    SLEEP = "Sleep"


XYZ = tuple[float, float, float]


@dataclass(frozen=True)
class Ok:
    pass


@dataclass(frozen=True)
class ErrorReply:
    code: int | None
    text: str = ""

    def describe(self) -> str:
        return error_text(self.code) if self.code is not None else f"error: {self.text}"


@dataclass(frozen=True)
class AlarmReply:
    code: int | None
    text: str = ""

    def describe(self) -> str:
        return alarm_text(self.code) if self.code is not None else f"ALARM: {self.text}"


@dataclass(frozen=True)
class Greeting:
    version: str          # "1.1h"

    @property
    def supported(self) -> bool:
        return self.version.startswith(SUPPORTED_MAJOR_MINOR)


@dataclass(frozen=True)
class Message:
    """[MSG:...] feedback: unlock hints, 'Reset to continue', 'Caution: Unlocked'..."""

    text: str


@dataclass(frozen=True)
class Feedback:
    """Other bracketed feedback: [VER:..], [OPT:..], [GC:..], [G54:..], [HLP:..], [echo:..]."""

    tag: str
    body: str


@dataclass(frozen=True)
class Setting:
    """One '$n=value' line of a '$$' dump."""

    number: int
    value: float


@dataclass(frozen=True)
class StatusReport:
    state: MachineState
    substate: int | None = None
    mpos: XYZ | None = None
    wpos: XYZ | None = None
    wco: XYZ | None = None
    feed: float | None = None          # mm/min, current
    spindle: float | None = None
    buffer: tuple[int, int] | None = None   # (planner blocks free, RX bytes free)
    line_number: int | None = None
    pins: str = ""
    overrides: tuple[int, int, int] | None = None
    extra: tuple[tuple[str, str], ...] = ()
    raw: str = ""

    def resolve(self, known_wco: XYZ | None) -> tuple[XYZ | None, XYZ | None, XYZ | None]:
        """(mpos, wpos, wco): GRBL sends MPos *or* WPos ($10) and WCO only now and then;
        WPos = MPos - WCO fills in the missing one from the last WCO seen."""
        wco = self.wco if self.wco is not None else known_wco
        mpos, wpos = self.mpos, self.wpos
        if wco is not None:
            if mpos is not None and wpos is None:
                wpos = _sub(mpos, wco)
            elif wpos is not None and mpos is None:
                mpos = _add(wpos, wco)
        return mpos, wpos, wco


@dataclass(frozen=True)
class Garbage:
    """A line that is none of the above (line noise, a garbled reply)."""

    raw: bytes


Reply = Ok | ErrorReply | AlarmReply | Greeting | Message | Feedback | Setting | StatusReport | Garbage


def _add(a: XYZ, b: XYZ) -> XYZ:
    return (a[0] + b[0], a[1] + b[1], a[2] + b[2])


def _sub(a: XYZ, b: XYZ) -> XYZ:
    return (a[0] - b[0], a[1] - b[1], a[2] - b[2])


def _floats(text: str, n: int | None = None) -> tuple[float, ...]:
    values = tuple(float(v) for v in text.split(","))
    if n is not None and len(values) != n:
        raise ValueError(f"expected {n} values in {text!r}")
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f"non-finite value in {text!r}")
    return values


def _xyz(text: str) -> XYZ:
    values = _floats(text)
    if not 2 <= len(values) <= 6:
        raise ValueError(f"bad axis vector {text!r}")
    padded = values + (0.0,) * (3 - len(values)) if len(values) < 3 else values[:3]
    return (padded[0], padded[1], padded[2])


def parse_status(text: str) -> StatusReport:
    """Parse '<Idle|MPos:1.000,2.000,0.000|FS:0,0|WCO:0.000,0.000,0.000>'. Raises ValueError."""
    if not (text.startswith("<") and text.endswith(">")):
        raise ValueError(f"not a status report: {text!r}")
    fields = text[1:-1].split("|")
    state_text, _, sub = fields[0].partition(":")
    state = MachineState(state_text)
    kw: dict = {"state": state, "substate": int(sub) if sub else None, "raw": text}
    extra = []
    for f in fields[1:]:
        key, sep, value = f.partition(":")
        if not sep:
            raise ValueError(f"bad status field {f!r}")
        if key == "MPos":
            kw["mpos"] = _xyz(value)
        elif key == "WPos":
            kw["wpos"] = _xyz(value)
        elif key == "WCO":
            kw["wco"] = _xyz(value)
        elif key == "FS":
            kw["feed"], kw["spindle"] = _floats(value, 2)
        elif key == "F":
            kw["feed"] = _floats(value, 1)[0]
        elif key == "Bf":
            blocks, rx = _floats(value, 2)
            kw["buffer"] = (int(blocks), int(rx))
        elif key == "Ln":
            kw["line_number"] = int(value)
        elif key == "Pn":
            kw["pins"] = value
        elif key == "Ov":
            a, b, c = _floats(value, 3)
            kw["overrides"] = (int(a), int(b), int(c))
        else:
            extra.append((key, value))
    if kw.get("mpos") is None and kw.get("wpos") is None:
        raise ValueError(f"status report without MPos or WPos: {text!r}")
    kw["extra"] = tuple(extra)
    return StatusReport(**kw)


def _printable_tail(raw: bytes) -> bytes:
    """The part of a line after its last non-printable byte: line noise glued in front of a
    good reply (e.g. b'\\xfe\\x00ok') is dropped so the reply itself is not lost."""
    last_bad = -1
    for i, b in enumerate(raw):
        if not 0x20 <= b <= 0x7E:
            last_bad = i
    return raw[last_bad + 1:]


def parse_line(raw: bytes) -> Reply | None:
    """One line from GRBL (without its line ending) -> a typed reply; None for blank lines."""
    raw = raw.strip(b"\r\n")
    if not raw.strip():
        return None
    greeting = _GREETING_RE.search(raw.decode("ascii", "replace"))
    if greeting:
        return Greeting(greeting.group(1))
    text = _printable_tail(raw).decode("ascii").strip()
    if not text:
        return Garbage(raw)
    try:
        if text == "ok":
            return Ok()
        if text.startswith("error:"):
            rest = text[6:].strip()
            return ErrorReply(int(rest)) if rest.isdigit() else ErrorReply(None, rest)
        if text.startswith("ALARM:"):
            rest = text[6:].strip()
            return AlarmReply(int(rest)) if rest.isdigit() else AlarmReply(None, rest)
        if text.startswith("<"):
            return parse_status(text)
        if text.startswith("[") and text.endswith("]"):
            tag, _, body = text[1:-1].partition(":")
            return Message(body) if tag == "MSG" else Feedback(tag, body)
        m = re.fullmatch(r"\$(\d+)=(-?[\d.]+)", text)
        if m:
            return Setting(int(m.group(1)), float(m.group(2)))
        if re.fullmatch(r"\$N\d=.*", text):
            return Feedback("N", text[1:])
    except ValueError:
        pass
    return Garbage(raw)


def format_status(
    state: MachineState, *, substate: int | None = None, mpos: XYZ | None = None,
    wpos: XYZ | None = None, feed: float = 0.0, spindle: float = 0.0,
    buffer: tuple[int, int] | None = None, wco: XYZ | None = None,
    overrides: tuple[int, int, int] | None = None, pins: str = "", inches: bool = False,
) -> str:
    """The status text GRBL 1.1 prints (field order as in report_realtime_status). With $13=1
    (inches) positions have 4 decimals and the feed 1 (N_DECIMAL_*_INCH in config.h)."""
    head = state.value + (f":{substate}" if substate is not None else "")
    parts = [head]
    places = 4 if inches else 3

    def vec(v: XYZ) -> str:
        return ",".join(f"{c:.{places}f}" for c in v)

    if mpos is not None:
        parts.append("MPos:" + vec(mpos))
    elif wpos is not None:
        parts.append("WPos:" + vec(wpos))
    if buffer is not None:
        parts.append(f"Bf:{buffer[0]},{buffer[1]}")
    parts.append(f"FS:{feed:.1f},{spindle:.0f}" if inches else f"FS:{feed:.0f},{spindle:.0f}")
    if pins:
        parts.append(f"Pn:{pins}")
    if wco is not None:
        parts.append("WCO:" + vec(wco))
    elif overrides is not None:
        parts.append("Ov:" + ",".join(str(o) for o in overrides))
    return "<" + "|".join(parts) + ">"


class LineSplitter:
    """Assemble serial bytes into lines. A run longer than ``max_line`` without a line end is
    line noise: it is cut off and returned as one line (parsed as Garbage) so a stream of
    junk can never grow memory or block the next good line."""

    def __init__(self, max_line: int = 256) -> None:
        self._buf = bytearray()
        self._max = max_line

    def feed(self, data: bytes) -> list[bytes]:
        self._buf += data
        lines = []
        while True:
            i = self._buf.find(b"\n")
            if i < 0:
                break
            lines.append(bytes(self._buf[:i]).rstrip(b"\r"))
            del self._buf[: i + 1]
        if len(self._buf) > self._max:
            lines.append(bytes(self._buf))
            self._buf.clear()
        return lines

    def clear(self) -> None:
        self._buf.clear()

    @property
    def pending(self) -> int:
        return len(self._buf)


# --------------------------------------------------------------------------------------------
# Streaming: character counting
# --------------------------------------------------------------------------------------------
@dataclass
class CharCountingStreamer:
    """GRBL's character-counting protocol: keep as many lines in flight as fit in the
    controller's RX buffer, so the planner never starves and the buffer never overflows.

    Every line sent is remembered with its byte count; every ``ok``/``error`` acknowledges the
    oldest line. A new line may go out only when in-flight bytes + its length <= capacity
    (RX buffer size - 1: GRBL's ring buffer keeps one slot free).
    """

    rx_buffer_size: int = RX_BUFFER_SIZE
    _in_flight: deque[tuple[int, int, bytes]] = field(default_factory=deque, init=False)
    _bytes: int = field(default=0, init=False)
    _next_id: int = field(default=1, init=False)

    @property
    def capacity(self) -> int:
        return self.rx_buffer_size - 1

    @property
    def bytes_in_flight(self) -> int:
        return self._bytes

    @property
    def pending(self) -> int:
        return len(self._in_flight)

    def pending_lines(self) -> list[tuple[int, bytes]]:
        return [(t, line) for t, _, line in self._in_flight]

    def can_send(self, line: bytes) -> bool:
        if len(line) > self.capacity:
            raise ValueError(f"line of {len(line)} bytes can never fit the {self.capacity} byte "
                             "RX buffer")
        return self._bytes + len(line) <= self.capacity

    def sent(self, line: bytes) -> int:
        """Record a line as sent; returns its ticket (increasing integers)."""
        if not self.can_send(line):
            raise RuntimeError("RX buffer would overflow; wait for acknowledgements first")
        ticket = self._next_id
        self._next_id += 1
        self._in_flight.append((ticket, len(line), line))
        self._bytes += len(line)
        return ticket

    def acknowledged(self) -> tuple[int, bytes] | None:
        """An ok/error arrived: the oldest line is done. None if nothing was in flight (a
        stray acknowledgement, e.g. after a re-sync)."""
        if not self._in_flight:
            return None
        ticket, n, line = self._in_flight.popleft()
        self._bytes -= n
        return ticket, line

    def clear(self) -> list[tuple[int, bytes]]:
        """Forget every line in flight (after a reset, or a re-sync that proved them done)."""
        dropped = [(t, line) for t, _, line in self._in_flight]
        self._in_flight.clear()
        self._bytes = 0
        return dropped


# --------------------------------------------------------------------------------------------
# Motion timing
# --------------------------------------------------------------------------------------------
def trapezoid_time(distance: float, speed: float, accel: float) -> float:
    """Time for a rest-to-rest move with constant acceleration ``accel`` and cruise ``speed``
    (triangular when the move is too short to reach cruise speed)."""
    if distance < 0 or speed <= 0 or accel <= 0:
        raise ValueError("need distance >= 0, speed > 0, accel > 0")
    if distance == 0:
        return 0.0
    if distance >= speed * speed / accel:
        return distance / speed + speed / accel
    return 2.0 * math.sqrt(distance / accel)


def move_timeout(
    distance_mm: float, speed_mm_s: float, accel_mm_s2: float, *, factor: float = 1.5,
    margin_s: float = 1.0,
) -> float:
    """How long to wait for a move before calling it failed: the trapezoid time scaled by
    ``factor`` (controller rounding, per-axis limits, status polling) plus a fixed margin
    (serial latency, planner start-up)."""
    return trapezoid_time(distance_mm, speed_mm_s, accel_mm_s2) * factor + margin_s


def axis_limited(
    unit: tuple[float, ...], feed_mm_s: float, max_rates_mm_s: tuple[float, ...],
    accels_mm_s2: tuple[float, ...],
) -> tuple[float, float]:
    """Vector (speed, acceleration) of a straight move as GRBL's planner limits it: no axis
    may exceed its own max rate or acceleration."""
    speed, accel = feed_mm_s, math.inf
    for u, vmax, amax in zip(unit, max_rates_mm_s, accels_mm_s2, strict=True):
        if abs(u) > 1e-12:
            speed = min(speed, vmax / abs(u))
            accel = min(accel, amax / abs(u))
    return speed, accel
