"""Property-based fuzzing of what devices send back: any bytes, and plausible but wrong replies.

The parsers (pure functions) take any byte string and return a typed reply or Garbage, never
raise. The drivers, talking through pyserial to the emulators on a pseudo-terminal, get one
reply rewritten into something that almost parses (a bit flip, a cut, a wrong number, a
field of another reply): each call then either succeeds or raises the device's own error
(a `DeviceError` the station reports and recovers from); never another exception, never a
hang. Bounded: a fixed number of examples, each limited by the drivers' own timeouts.
"""

from __future__ import annotations

import contextlib
import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from errors import DeviceError
from rig import grbl_protocol as gp
from rig import ringlight_protocol as rp
from rig.grbl import GrblSettings, GrblStage
from rig.ringlight import RingLight, RingLightSettings
from rig.sim.bench_state import BenchState
from rig.sim.grbl_emulator import GrblEmulator, GrblEmulatorConfig
from rig.sim.ringlight_emulator import RingLightEmulator

PARSERS = settings(max_examples=400, deadline=None, derandomize=True)
DRIVERS = settings(max_examples=30, deadline=None, derandomize=True,
                   suppress_health_check=[HealthCheck.function_scoped_fixture])
PRINTABLE = string.ascii_letters + string.digits + string.punctuation + " "


@PARSERS
@given(st.binary(max_size=300))
def test_any_bytes_parse_to_a_grbl_reply_or_garbage(raw: bytes) -> None:
    reply = gp.parse_line(raw)
    assert reply is None or isinstance(reply, (gp.Ok, gp.ErrorReply, gp.AlarmReply,
                                                gp.Greeting, gp.Message, gp.Feedback,
                                                gp.Setting, gp.StatusReport, gp.Garbage))


STATUS_FIELDS = st.sampled_from(["MPos", "WPos", "WCO", "FS", "F", "Bf", "Ln", "Pn", "Ov", "A"])
NUMBER = st.one_of(st.floats(allow_nan=True, allow_infinity=True).map(str),
                   st.integers(-10**20, 10**20).map(str), st.text(PRINTABLE, max_size=6))


@st.composite
def status_like(draw) -> bytes:
    """Status reports with any states, fields and values: the shape GRBL sends, wrong inside."""
    state = draw(st.sampled_from(["Idle", "Run", "Hold:0", "Hold:x", "Alarm", "Home", "Jog",
                                  "Door:1", "Check", "Sleep", "Nope", ""]))
    fields = [f"{draw(STATUS_FIELDS)}:{','.join(draw(st.lists(NUMBER, max_size=4)))}"
              for _ in range(draw(st.integers(0, 5)))]
    return ("<" + "|".join([state, *fields]) + ">").encode()


@PARSERS
@given(status_like())
def test_any_status_report_parses_with_finite_positions_or_is_garbage(raw: bytes) -> None:
    reply = gp.parse_line(raw)
    assert isinstance(reply, (gp.StatusReport, gp.Garbage))
    if isinstance(reply, gp.StatusReport):
        pos = reply.mpos if reply.mpos is not None else reply.wpos
        assert pos is not None and all(abs(v) < float("inf") for v in pos)


@PARSERS
@given(st.lists(st.binary(max_size=80), max_size=20))
def test_the_line_splitter_never_holds_more_than_one_line(chunks: list[bytes]) -> None:
    splitter = gp.LineSplitter(max_line=64)
    for chunk in chunks:
        splitter.feed(chunk)
        assert splitter.pending <= 64


@PARSERS
@given(st.binary(max_size=200))
def test_any_bytes_parse_to_a_ring_light_reply_or_garbage(raw: bytes) -> None:
    reply = rp.parse_reply(raw)
    assert reply is None or isinstance(reply, (rp.OkReply, rp.ErrReply, rp.EventLine,
                                                rp.Garbage))
    if isinstance(reply, rp.OkReply):  # field parsers: a value or ValueError, nothing else
        for parse in (rp.parse_status, rp.parse_identity):
            with contextlib.suppress(ValueError):
                parse(reply)


# ---- drivers against the emulators, one reply rewritten ----------------------------------

@st.composite
def mutations(draw):
    """A function turning a good reply line into a plausible wrong one (bytes, line end kept
    unless the mutation cuts it)."""
    kind = draw(st.sampled_from(["flip", "cut", "insert", "replace_number", "swap_field",
                                 "duplicate", "no_newline"]))
    pos = draw(st.integers(0, 200))
    text = draw(st.text(PRINTABLE, min_size=1, max_size=8))

    def mutate(line: str) -> bytes:
        i = pos % max(len(line), 1)
        if kind == "flip":
            out = line[:i] + chr((ord(line[i]) ^ 0x01) & 0x7F or 0x21) + line[i + 1:] \
                if line else text
        elif kind == "cut":
            out = line[:i]
        elif kind == "insert":
            out = line[:i] + text + line[i:]
        elif kind == "replace_number":
            digits = [j for j, c in enumerate(line) if c.isdigit()]
            j = digits[pos % len(digits)] if digits else i
            out = line[:j] + text + line[j + 1:]
        elif kind == "swap_field":
            words = line.split(" ") if " " in line else line.split("|")
            sep = " " if " " in line else "|"
            out = sep.join(reversed(words))
        elif kind == "duplicate":
            return (line + "\r\n" + line + "\r\n").encode("ascii", "replace")
        else:
            return line.encode("ascii", "replace")
        return (out + "\r\n").encode("ascii", "replace")

    mutate.__qualname__ = f"{kind}@{pos}:{text!r}"
    return mutate


@pytest.fixture(scope="module")
def light_rig():
    bench = BenchState()
    emu = RingLightEmulator(bench, boot_delay_s=0.02)
    emu.start()
    light = RingLight(RingLightSettings(
        emu.port, facet_levels=(200,) * 12, settle_us=100, trigger_pulse_us=100, hold_us=2000,
        command_timeout_s=0.3, open_timeout_s=1.5))
    light.open()
    yield emu, light
    light.close()
    emu.stop()


LIGHT_CALLS = {
    "status": lambda lt: lt.status(),
    "identify": lambda lt: lt.identify(),
    "select_state": lambda lt: lt.select_state(3),
    "levels": lambda lt: lt.levels(),
    "timing": lambda lt: lt.timing(),
    "arm": lambda lt: lt.arm([0, 1, 2, 3, 4, 5]),
    "all_off": lambda lt: lt.all_off(),
    "arm_trigger": lambda lt: (lt.arm([0, 1]), lt.trigger()),
}


@DRIVERS
@given(call=st.sampled_from(sorted(LIGHT_CALLS)), mutate=mutations())
def test_the_ring_light_driver_meets_a_wrong_reply_with_its_own_error(light_rig, call,
                                                                      mutate) -> None:
    emu, light = light_rig
    emu.rewrite_replies(mutate, prefix="OK")
    with contextlib.suppress(DeviceError):
        LIGHT_CALLS[call](light)
    light.close()  # the next example starts from a fresh connection, as after an error
    light.open()


@pytest.fixture(scope="module")
def stage_rig():
    bench = BenchState()
    emu = GrblEmulator(GrblEmulatorConfig(
        max_rate_mm_min=(60000.0, 60000.0), accel_mm_s2=(20000.0, 20000.0),
        homing_seek_mm_min=60000.0, homing_feed_mm_min=6000.0, start_xy_mm=(2.0, 2.0)),
        bench, boot_delay_s=0.02)
    emu.start()
    stage = GrblStage(GrblSettings(
        emu.port, max_speed_mm_s=1000.0, acceleration_mm_s2=20000.0, command_timeout_s=0.5,
        boot_timeout_s=1.0, homing_timeout_s=3.0, poll_interval_s=0.01,
        move_timeout_margin_s=0.5))
    stage.open()
    yield emu, stage
    stage.close()
    emu.stop()


STAGE_CALLS = {
    "status": (lambda s: s.status(), "<"),
    "move": (lambda s: s.move_to(10.0, 12.0), "ok"),
    "move_status": (lambda s: s.move_to(14.0, 9.0), "<"),
    "position": (lambda s: s.position(), "<"),
}


@DRIVERS
@given(call=st.sampled_from(sorted(STAGE_CALLS)), mutate=mutations())
def test_the_grbl_driver_meets_a_wrong_reply_with_its_own_error(stage_rig, call,
                                                                mutate) -> None:
    emu, stage = stage_rig
    fn, prefix = STAGE_CALLS[call]
    emu.rewrite_replies(mutate, prefix=prefix)
    try:
        fn(stage)
        stage.wait_idle()
    except DeviceError:
        stage.close()  # recover as the station does: a fresh connection (homes again)
        stage.open()
