"""Ring-light protocol v1, byte by byte (pure functions)."""

from __future__ import annotations

import pytest

from rig import ringlight_protocol as rp
from rig.ringlight_protocol import Command, ErrorCode, Mode


def test_command_bytes():
    assert rp.cmd_id() == b"ID\n"
    assert rp.cmd_status() == b"STATUS\n"
    assert rp.cmd_level(3, 200) == b"LEVEL 3 200\n"
    assert rp.cmd_level(11) == b"LEVEL 11\n"
    assert rp.cmd_levels(list(range(12))) == b"LEVELS 0 1 2 3 4 5 6 7 8 9 10 11\n"
    assert rp.cmd_levels() == b"LEVELS\n"
    assert rp.cmd_state(5) == b"STATE 5\n"
    assert rp.cmd_off() == b"OFF\n"
    assert rp.cmd_arm([0, 1, 2, 3, 4, 5]) == b"ARM 6 0 1 2 3 4 5\n"
    assert rp.cmd_trig() == b"TRIG\n"
    assert rp.cmd_run(85000) == b"RUN 85000\n"
    assert rp.cmd_disarm() == b"DISARM\n"
    assert rp.cmd_timing(200, 100, 30000) == b"TIMING 200 100 30000\n"
    assert rp.cmd_timing() == b"TIMING\n"
    longest = rp.cmd_arm([5] * rp.MAX_SEQUENCE)
    assert len(longest) <= rp.MAX_LINE          # fits the firmware's line buffer


@pytest.mark.parametrize("make", [
    lambda: rp.cmd_run(0), lambda: rp.cmd_run(rp.PERIOD_MAX_US + 1),
    lambda: rp.cmd_level(12, 1), lambda: rp.cmd_level(0, 256), lambda: rp.cmd_level(0, -1),
    lambda: rp.cmd_level(0, 1.5), lambda: rp.cmd_levels([1] * 11), lambda: rp.cmd_state(6),
    lambda: rp.cmd_arm([]), lambda: rp.cmd_arm([0] * 33), lambda: rp.cmd_arm([6]),
    lambda: rp.cmd_timing(0, 0, 10), lambda: rp.cmd_timing(0, 100, 50),
    lambda: rp.cmd_timing(200_000, 100, 1000), lambda: rp.cmd_timing(0, 100, None),
])
def test_commands_validate_like_the_firmware(make):
    with pytest.raises(ValueError):
        make()


def test_parse_replies():
    assert rp.parse_reply(b"OK LEVEL 3 200\r") == rp.OkReply("LEVEL", ("3", "200"))
    assert rp.parse_reply(b"OK OFF") == rp.OkReply("OFF", ())
    err = rp.parse_reply(b"ERR 3 OUT_OF_RANGE facet must be 0..11")
    assert err == rp.ErrReply(3, "OUT_OF_RANGE", "facet must be 0..11")
    assert "outside its allowed range" in err.describe()
    assert rp.parse_reply(b"ERR 5 BUSY") == rp.ErrReply(5, "BUSY", "")
    assert rp.parse_reply(b"EV DONE 6") == rp.EventLine("DONE", ("6",))
    assert rp.parse_reply(b"EV READY DF-RINGLIGHT 1.0.0 1") == rp.EventLine(
        "READY", ("DF-RINGLIGHT", "1.0.0", "1"))
    assert rp.parse_reply(b"") is None and rp.parse_reply(b"\r") is None


@pytest.mark.parametrize("raw", [b"\xcf\xcb OFF", b"OK", b"OK NOPE", b"ERR x BAD", b"EV HUH",
                                 b"hello", b"ok", b"OK\x00LEVEL"])
def test_garbage(raw):
    assert isinstance(rp.parse_reply(raw), rp.Garbage)


def test_identity_and_status_round_trip():
    ident = rp.parse_identity(rp.parse_reply(rp.format_identity().encode()))
    assert ident == rp.Identity("DF-RINGLIGHT", rp.FIRMWARE_VERSION, rp.PROTOCOL_VERSION, 12, 6)
    assert rp.format_identity() == "OK ID DF-RINGLIGHT 1.1.0 PROTO=1 FACETS=12 STATES=6"
    st = rp.LightStatus(Mode.BUSY, 4, 3, 6, 42, 1)
    text = rp.format_status(st)
    assert text == "OK STATUS MODE=BUSY STATE=4 STEP=3 N=6 TRIGS=42 OVR=1"
    assert rp.parse_status(rp.parse_reply(text.encode())) == st
    dark = rp.LightStatus(Mode.IDLE, None, 0, 0, 0, 0)
    assert "STATE=-" in rp.format_status(dark)
    assert rp.parse_status(rp.parse_reply(rp.format_status(dark).encode())) == dark
    with pytest.raises(ValueError):
        rp.parse_status(rp.OkReply("ID", ()))


def test_device_side_formatting():
    assert rp.format_ok(Command.TRIG, 0, 5) == "OK TRIG 0 5"
    assert rp.format_err(ErrorCode.NOT_ARMED, "no sequence armed") == (
        "ERR 6 NOT_ARMED no sequence armed")
    assert rp.format_event(rp.Event.OVERRUN, 2) == "EV OVERRUN 2"
    assert rp.parse_uint("007") == 7 and rp.parse_uint("") is None
    assert rp.parse_uint("-1") is None and rp.parse_uint("1e3") is None
    assert rp.parse_uint("12345678901") == 2**32 - 1


def test_helpers():
    assert rp.facets_of_state(0) == (0, 6) and rp.facets_of_state(5) == (5, 11)
    with pytest.raises(ValueError):
        rp.facets_of_state(6)
    assert rp.round_to_tick(0) == 0 and rp.round_to_tick(1) == 50 and rp.round_to_tick(100) == 100
    assert rp.round_to_tick(120) == 150
    assert rp.default_sequence(6) == (0, 1, 2, 3, 4, 5)
    assert rp.default_sequence(8) == (0, 1, 2, 3, 4, 5, 0, 1)


def test_every_error_code_has_help():
    assert set(rp.ERROR_HELP) == set(ErrorCode)
    assert [e.value for e in ErrorCode] == list(range(1, len(ErrorCode) + 1))
