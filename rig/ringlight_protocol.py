"""Ring-light controller protocol (version 1), sans-IO. Specification: docs/ring-light-protocol.md.

One ASCII command line per request, one reply line per command (``OK <COMMAND> ...`` or
``ERR <code> <NAME> <detail>``), plus unsolicited ``EV ...`` lines. The constants below are
the contract with the firmware (firmware/ringlight/ringlight.ino); a test parses the sketch and
fails if the two disagree.
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from rig.grbl_protocol import LineSplitter as LineSplitter  # generic byte -> line assembly

DEVICE_NAME = "DF-RINGLIGHT"
FIRMWARE_VERSION = "1.1.0"
PROTOCOL_VERSION = 1
BAUDRATE = 115200
NUM_FACETS = 12
NUM_STATES = 6
LEVEL_MAX = 255
DEFAULT_LEVEL = 255
MAX_LINE = 96                # receive buffer incl. terminator: at most 95 characters a line
MAX_SEQUENCE = 32
TICK_US = 50                 # firmware timer resolution; times round up to it
DEFAULT_SETTLE_US = 200      # LEDs on -> trigger rising edge
DEFAULT_PULSE_US = 100       # trigger pulse width
DEFAULT_HOLD_US = 30000      # trigger rising edge -> LEDs off (>= camera exposure)
SETTLE_MAX_US = 100_000
PULSE_MAX_US = 100_000
HOLD_MAX_US = 10_000_000
PERIOD_MAX_US = 10_000_000
RUN_SINCE_FIRMWARE = (1, 1)  # RUN is new in firmware 1.1.0 (protocol 1, additive)

HOST_EOL = b"\n"
DEVICE_EOL = b"\r\n"


class Command(enum.StrEnum):
    ID = "ID"
    STATUS = "STATUS"
    LEVEL = "LEVEL"
    LEVELS = "LEVELS"
    STATE = "STATE"
    OFF = "OFF"
    ARM = "ARM"
    TRIG = "TRIG"
    RUN = "RUN"
    DISARM = "DISARM"
    TIMING = "TIMING"


class ErrorCode(enum.IntEnum):
    UNKNOWN_COMMAND = 1
    BAD_ARGUMENT = 2
    OUT_OF_RANGE = 3
    LINE_TOO_LONG = 4
    BUSY = 5
    NOT_ARMED = 6
    ARMED = 7
    BAD_CHARACTER = 8


ERROR_HELP: dict[ErrorCode, str] = {
    ErrorCode.UNKNOWN_COMMAND: "the controller does not know this command (firmware too old?)",
    ErrorCode.BAD_ARGUMENT: "wrong number of arguments or not a number",
    ErrorCode.OUT_OF_RANGE: "a value is outside its allowed range",
    ErrorCode.LINE_TOO_LONG: f"command longer than {MAX_LINE - 1} characters",
    ErrorCode.BUSY: "a sequence step is running (LEDs lit, trigger pending); wait for it",
    ErrorCode.NOT_ARMED: "TRIG without an armed sequence; ARM first",
    ErrorCode.ARMED: "a sequence is armed; DISARM (or OFF) before lighting a state by hand",
    ErrorCode.BAD_CHARACTER: "non-ASCII or control byte in the command (line noise?)",
}


class Mode(enum.StrEnum):
    IDLE = "IDLE"       # all facets off, nothing armed
    LIT = "LIT"         # a state lit by hand (STATE k)
    ARMED = "ARMED"     # sequence armed, waiting for a trigger, facets off
    BUSY = "BUSY"       # a step is running: facets lit, trigger pulse, hold


class Event(enum.StrEnum):
    READY = "READY"     # EV READY <name> <firmware> <protocol>: firmware (re)started
    TRIG = "TRIG"       # EV TRIG <step> <state>: hardware trigger input fired a step
    DONE = "DONE"       # EV DONE <n>: the last step of the sequence finished
    OVERRUN = "OVERRUN"  # EV OVERRUN <step>: trigger input while a step was running


def facets_of_state(state: int) -> tuple[int, int]:
    """State k lights facets k and k + 6 (azimuths 30k and 30k + 180 degrees)."""
    if not 0 <= state < NUM_STATES:
        raise ValueError(f"state {state} not in 0..{NUM_STATES - 1}")
    return (state, state + NUM_STATES)


def round_to_tick(us: int) -> int:
    """The duration the firmware actually produces for a requested one."""
    return int(math.ceil(us / TICK_US)) * TICK_US


def default_sequence(n: int) -> tuple[int, ...]:
    """``ARM n`` without explicit states: 0, 1, ..., wrapping after the last state."""
    return tuple(i % NUM_STATES for i in range(n))


# --------------------------------------------------------------------------------------------
# Host side: commands
# --------------------------------------------------------------------------------------------
def _line(*words: object) -> bytes:
    text = " ".join(str(w) for w in words)
    if len(text) > MAX_LINE - 1:
        raise ValueError(f"command {text!r} longer than {MAX_LINE - 1} characters")
    return text.encode("ascii") + HOST_EOL


def _check_level(level: int) -> int:
    if not (isinstance(level, int) and 0 <= level <= LEVEL_MAX):
        raise ValueError(f"level {level!r} not an integer in 0..{LEVEL_MAX}")
    return level


def _check_facet(facet: int) -> int:
    if not (isinstance(facet, int) and 0 <= facet < NUM_FACETS):
        raise ValueError(f"facet {facet!r} not in 0..{NUM_FACETS - 1}")
    return facet


def _check_state(state: int) -> int:
    if not (isinstance(state, int) and 0 <= state < NUM_STATES):
        raise ValueError(f"state {state!r} not in 0..{NUM_STATES - 1}")
    return state


def cmd_id() -> bytes:
    return _line(Command.ID)


def cmd_status() -> bytes:
    return _line(Command.STATUS)


def cmd_level(facet: int, level: int | None = None) -> bytes:
    if level is None:
        return _line(Command.LEVEL, _check_facet(facet))
    return _line(Command.LEVEL, _check_facet(facet), _check_level(level))


def cmd_levels(levels: Sequence[int] | None = None) -> bytes:
    if levels is None:
        return _line(Command.LEVELS)
    if len(levels) != NUM_FACETS:
        raise ValueError(f"need {NUM_FACETS} levels, got {len(levels)}")
    return _line(Command.LEVELS, *(_check_level(v) for v in levels))


def cmd_state(state: int) -> bytes:
    return _line(Command.STATE, _check_state(state))


def cmd_off() -> bytes:
    return _line(Command.OFF)


def cmd_arm(states: Sequence[int]) -> bytes:
    if not 1 <= len(states) <= MAX_SEQUENCE:
        raise ValueError(f"a sequence has 1..{MAX_SEQUENCE} steps, got {len(states)}")
    return _line(Command.ARM, len(states), *(_check_state(s) for s in states))


def cmd_trig() -> bytes:
    return _line(Command.TRIG)


def cmd_run(period_us: int) -> bytes:
    """Fire the remaining armed steps from the board's timer, one every `period_us`."""
    if not 1 <= period_us <= PERIOD_MAX_US:
        raise ValueError(f"period must be 1..{PERIOD_MAX_US} us, got {period_us}")
    return _line(Command.RUN, int(period_us))


def cmd_disarm() -> bytes:
    return _line(Command.DISARM)


def cmd_timing(settle_us: int | None = None, pulse_us: int | None = None,
               hold_us: int | None = None) -> bytes:
    if settle_us is None and pulse_us is None and hold_us is None:
        return _line(Command.TIMING)
    if settle_us is None or pulse_us is None or hold_us is None:
        raise ValueError("give all three of settle_us, pulse_us, hold_us")
    check_timing(settle_us, pulse_us, hold_us)
    return _line(Command.TIMING, settle_us, pulse_us, hold_us)


def check_timing(settle_us: int, pulse_us: int, hold_us: int) -> None:
    """The firmware's rules, so bad values fail before they reach the wire."""
    if not 0 <= settle_us <= SETTLE_MAX_US:
        raise ValueError(f"settle {settle_us} us not in 0..{SETTLE_MAX_US}")
    if not 1 <= pulse_us <= PULSE_MAX_US:
        raise ValueError(f"trigger pulse {pulse_us} us not in 1..{PULSE_MAX_US}")
    if not pulse_us <= hold_us <= HOLD_MAX_US:
        raise ValueError(f"hold {hold_us} us not in pulse..{HOLD_MAX_US} (>= the pulse)")


# --------------------------------------------------------------------------------------------
# Replies
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class OkReply:
    command: str
    args: tuple[str, ...]


@dataclass(frozen=True)
class ErrReply:
    code: int
    name: str
    detail: str

    def describe(self) -> str:
        try:
            hint = ERROR_HELP[ErrorCode(self.code)]
        except ValueError:
            hint = "unknown error code"
        detail = f" ({self.detail})" if self.detail else ""
        return f"ERR {self.code} {self.name}{detail}: {hint}"


@dataclass(frozen=True)
class EventLine:
    name: str
    args: tuple[str, ...]


@dataclass(frozen=True)
class Garbage:
    raw: bytes


Reply = OkReply | ErrReply | EventLine | Garbage

_TOKEN = re.compile(r"[\x21-\x7e]+")


def parse_reply(raw: bytes) -> Reply | None:
    """One device line (without line end) -> typed reply; None for a blank line."""
    raw = raw.strip(b"\r\n")
    if not raw.strip():
        return None
    if any(not 0x20 <= b <= 0x7E for b in raw):
        return Garbage(raw)
    words = raw.decode("ascii").split()
    head = words[0]
    if head == "OK" and len(words) >= 2 and words[1] in Command.__members__:
        return OkReply(words[1], tuple(words[2:]))
    if head == "ERR" and len(words) >= 3 and words[1].isdigit():
        return ErrReply(int(words[1]), words[2], " ".join(words[3:]))
    if head == "EV" and len(words) >= 2 and words[1] in Event.__members__:
        return EventLine(words[1], tuple(words[2:]))
    return Garbage(raw)


def parse_kv(args: Sequence[str]) -> dict[str, str]:
    out = {}
    for a in args:
        key, sep, value = a.partition("=")
        if sep:
            out[key] = value
    return out


@dataclass(frozen=True)
class Identity:
    name: str
    firmware: str
    protocol: int
    facets: int
    states: int


def parse_identity(reply: OkReply) -> Identity:
    """``OK ID DF-RINGLIGHT 1.1.0 PROTO=1 FACETS=12 STATES=6``"""
    if reply.command != Command.ID or len(reply.args) < 2:
        raise ValueError(f"not an ID reply: {reply}")
    kv = parse_kv(reply.args[2:])
    try:
        return Identity(reply.args[0], reply.args[1], int(kv.get("PROTO", "0")),
                        int(kv.get("FACETS", "0")), int(kv.get("STATES", "0")))
    except ValueError:
        raise ValueError(f"malformed ID reply: {reply}") from None


@dataclass(frozen=True)
class LightStatus:
    mode: Mode
    state: int | None          # the state lit now, None when dark
    step: int                  # steps fired in the current sequence
    length: int                # steps in the current sequence (0: none armed)
    triggers: int              # steps fired since power-up
    overruns: int              # trigger inputs ignored because a step was running


def parse_status(reply: OkReply) -> LightStatus:
    """``OK STATUS MODE=ARMED STATE=- STEP=0 N=6 TRIGS=0 OVR=0``"""
    if reply.command != Command.STATUS:
        raise ValueError(f"not a STATUS reply: {reply}")
    kv = parse_kv(reply.args)
    state = kv.get("STATE", "-")
    try:
        return LightStatus(Mode(kv["MODE"]), None if state == "-" else int(state),
                           int(kv["STEP"]), int(kv["N"]), int(kv["TRIGS"]), int(kv["OVR"]))
    except (KeyError, ValueError):
        raise ValueError(f"malformed STATUS reply: {reply}") from None


@dataclass(frozen=True)
class Timing:
    settle_us: int
    pulse_us: int
    hold_us: int


# --------------------------------------------------------------------------------------------
# Device side (the emulator; the firmware implements the same in C++)
# --------------------------------------------------------------------------------------------
def format_ok(command: str, *args: object) -> str:
    return " ".join(["OK", command, *(str(a) for a in args)])


def format_err(code: ErrorCode, detail: str = "") -> str:
    return f"ERR {int(code)} {code.name}" + (f" {detail}" if detail else "")


def format_event(event: Event, *args: object) -> str:
    return " ".join(["EV", event.value, *(str(a) for a in args)])


def format_identity() -> str:
    return format_ok(Command.ID, DEVICE_NAME, FIRMWARE_VERSION, f"PROTO={PROTOCOL_VERSION}",
                     f"FACETS={NUM_FACETS}", f"STATES={NUM_STATES}")


def format_status(s: LightStatus) -> str:
    state = "-" if s.state is None else str(s.state)
    return format_ok(Command.STATUS, f"MODE={s.mode.value}", f"STATE={state}",
                     f"STEP={s.step}", f"N={s.length}", f"TRIGS={s.triggers}",
                     f"OVR={s.overruns}")


def parse_uint(token: str) -> int | None:
    """The firmware's parseUint: decimal digits only (None otherwise: BAD_ARGUMENT). More than
    9 digits reads as a huge value, so the range check answers OUT_OF_RANGE."""
    if not token or not all("0" <= c <= "9" for c in token):
        return None
    return int(token) if len(token) <= 9 else 2**32 - 1
