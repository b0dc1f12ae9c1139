"""GRBL 1.1 protocol, byte by byte (pure functions: no port, no clock)."""

from __future__ import annotations

import math

import pytest

from rig import grbl_protocol as gp


# --------------------------------------------------------------------------------------------
# replies
# --------------------------------------------------------------------------------------------
def test_greeting_is_recognised_and_version_checked():
    g = gp.parse_line(b"Grbl 1.1h ['$' for help]")
    assert g == gp.Greeting("1.1h") and g.supported
    old = gp.parse_line(b"Grbl 0.9j ['$' for help]\r")
    assert old == gp.Greeting("0.9j") and not old.supported
    # line noise in front of the greeting (bootloader junk) does not hide it
    assert gp.parse_line(b"\x00\xf0\xfeGrbl 1.1f ['$' for help]") == gp.Greeting("1.1f")


@pytest.mark.parametrize("raw", [b"", b"\r", b"  \r\n"])
def test_blank_lines_are_ignored(raw):
    assert gp.parse_line(raw) is None


def test_ok_error_alarm():
    assert gp.parse_line(b"ok") == gp.Ok()
    assert gp.parse_line(b"ok\r") == gp.Ok()
    err = gp.parse_line(b"error:9")
    assert err == gp.ErrorReply(9)
    assert err.describe() == ("error:9 G-code lock: G-code commands are locked out during "
                              "alarm or jog state.")
    alarm = gp.parse_line(b"ALARM:1")
    assert alarm == gp.AlarmReply(1)
    assert "Hard limit" in alarm.describe() and "Re-homing is highly recommended" in (
        alarm.describe())
    assert gp.parse_line(b"error:Bad number format") == gp.ErrorReply(None, "Bad number format")
    assert "Unknown error" in gp.error_text(99)
    assert "Unknown alarm" in gp.alarm_text(99)


def test_error_and_alarm_tables_are_complete():
    assert set(gp.ERROR_CODES) == set(range(1, 18)) | set(range(20, 39))
    assert set(gp.ALARM_CODES) == set(range(1, 11))
    assert gp.ERROR_CODES[22] == ("Undefined feed rate",
                                  "Feed rate has not yet been set or is undefined.")
    assert gp.ALARM_CODES[2][0] == "Soft limit"
    assert gp.REHOMABLE_ALARMS.issubset(gp.ALARM_CODES)


def test_status_report_idle_with_mpos_and_wco():
    rep = gp.parse_line(b"<Idle|MPos:-199.000,-249.000,0.000|FS:0,0|WCO:-200.000,-250.000,0.000>")
    assert isinstance(rep, gp.StatusReport)
    assert rep.state is gp.MachineState.IDLE and rep.substate is None
    assert rep.mpos == (-199.0, -249.0, 0.0) and rep.wpos is None
    assert rep.wco == (-200.0, -250.0, 0.0)
    assert (rep.feed, rep.spindle) == (0.0, 0.0)
    mpos, wpos, wco = rep.resolve(None)
    assert wpos == pytest.approx((1.0, 1.0, 0.0))


def test_status_report_every_field():
    rep = gp.parse_status("<Hold:1|WPos:10.500,-2.000,0.000|Bf:15,128|Ln:99|FS:1200,0|"
                          "Pn:XY|Ov:100,90,80|A:SF>")
    assert rep.state is gp.MachineState.HOLD and rep.substate == 1
    assert rep.wpos == (10.5, -2.0, 0.0) and rep.mpos is None
    assert rep.buffer == (15, 128) and rep.line_number == 99 and rep.feed == 1200.0
    assert rep.pins == "XY" and rep.overrides == (100, 90, 80)
    assert rep.extra == (("A", "SF"),)
    # WPos + last known WCO -> MPos
    mpos, wpos, wco = rep.resolve((1.0, 2.0, 3.0))
    assert mpos == (11.5, 0.0, 3.0) and wco == (1.0, 2.0, 3.0)
    assert rep.resolve(None) == (None, (10.5, -2.0, 0.0), None)


def test_status_report_variants():
    assert gp.parse_status("<Run|MPos:1,2,3|F:500>").feed == 500.0
    assert gp.parse_status("<Alarm|MPos:0.000,0.000,0.000|FS:0,0>").state is gp.MachineState.ALARM
    assert gp.parse_status("<Home|MPos:1.0,2.0|FS:0,0>").mpos == (1.0, 2.0, 0.0)   # 2 axes
    assert gp.parse_status("<Door:2|MPos:0,0,0|FS:0,0>").substate == 2


@pytest.mark.parametrize("raw", [
    b"<Idle|MPos:abc,0,0|FS:0,0>",       # bad number
    b"<Idle|FS:0,0>",                     # no position
    b"<Idle|MPos:0,0,0",                  # truncated
    b"<Bogus|MPos:0,0,0>",                # unknown state
    b"<Idle|MPos:nan,0,0>",               # non-finite
    b"\xef\xeb",                          # garbled 'ok'
    b"okay",
    b"hello world",
])
def test_garbage_is_reported_not_raised(raw):
    assert isinstance(gp.parse_line(raw), gp.Garbage)


def test_noise_glued_in_front_of_a_reply_is_skipped():
    assert gp.parse_line(b"\xff\x00ok") == gp.Ok()
    rep = gp.parse_line(b"\x9c\xf1<Idle|MPos:1.000,2.000,0.000|FS:0,0>")
    assert isinstance(rep, gp.StatusReport) and rep.mpos == (1.0, 2.0, 0.0)


def test_feedback_messages_and_settings():
    assert gp.parse_line(b"[MSG:'$H'|'$X' to unlock]") == gp.Message(gp.MSG_UNLOCK_HINT)
    assert gp.parse_line(b"[MSG:Reset to continue]") == gp.Message(gp.MSG_RESET_TO_CONTINUE)
    assert gp.parse_line(b"[VER:1.1h.20190830:]") == gp.Feedback("VER", "1.1h.20190830:")
    assert gp.parse_line(b"[OPT:V,15,128]") == gp.Feedback("OPT", "V,15,128")
    assert gp.parse_line(b"[G54:-200.000,-250.000,0.000]") == gp.Feedback(
        "G54", "-200.000,-250.000,0.000")
    assert gp.parse_line(b"$110=3000.000") == gp.Setting(110, 3000.0)
    assert gp.parse_line(b"$10=1") == gp.Setting(10, 1.0)
    assert gp.parse_line(b"$N0=G21") == gp.Feedback("N", "N0=G21")


def test_format_status_round_trips_through_the_parser():
    text = gp.format_status(gp.MachineState.RUN, mpos=(1.0, -2.5, 0.0), feed=1200,
                            wco=(0.0, 0.0, 0.0))
    assert text == "<Run|MPos:1.000,-2.500,0.000|FS:1200,0|WCO:0.000,0.000,0.000>"
    rep = gp.parse_status(text)
    assert rep.mpos == (1.0, -2.5, 0.0) and rep.wco == (0.0, 0.0, 0.0)
    text = gp.format_status(gp.MachineState.HOLD, substate=0, wpos=(5.0, 6.0, 0.0),
                            buffer=(14, 100), overrides=(100, 100, 100))
    assert text == "<Hold:0|WPos:5.000,6.000,0.000|Bf:14,100|FS:0,0|Ov:100,100,100>"


# --------------------------------------------------------------------------------------------
# commands
# --------------------------------------------------------------------------------------------
def test_move_commands_bytes():
    assert gp.cmd_move(10, 20.5, feed_mm_min=3000) == b"G21 G90 G1 X10 Y20.5 F3000\n"
    assert gp.cmd_move(0.1234, -0.00001, feed_mm_min=600.25) == b"G21 G90 G1 X0.123 Y0 F600.2\n"
    assert gp.cmd_move(x=5, rapid=True) == b"G21 G90 G0 X5\n"
    assert gp.cmd_move(y=-1, feed_mm_min=60, absolute=False) == b"G21 G91 G1 Y-1 F60\n"


@pytest.mark.parametrize("kwargs", [
    {},                                           # no axis
    {"x": 1.0},                                   # G1 without feed
    {"x": 1.0, "feed_mm_min": 0},
    {"x": 1.0, "rapid": True, "feed_mm_min": 100},
    {"x": math.nan, "feed_mm_min": 100},
])
def test_bad_moves_are_rejected(kwargs):
    with pytest.raises(ValueError):
        gp.cmd_move(**kwargs)


def test_system_and_realtime_commands():
    assert gp.cmd_home() == b"$H\n"
    assert gp.cmd_unlock() == b"$X\n"
    assert gp.cmd_settings() == b"$$\n"
    assert gp.cmd_build_info() == b"$I\n"
    assert gp.cmd_set_work_offset(-200, -250.5) == b"G10 L2 P1 X-200 Y-250.5\n"
    assert gp.cmd_status_query() == b"?"
    assert gp.cmd_feed_hold() == b"!"
    assert gp.cmd_cycle_start() == b"~"
    assert gp.cmd_soft_reset() == b"\x18"


@pytest.mark.parametrize("text", ["G1 X1\nG1 X2", "G1 X1?", "G1 X1!", "X" * 80])
def test_cmd_line_guards(text):
    with pytest.raises(ValueError):
        gp.cmd_line(text)


def test_fmt_number():
    assert gp.fmt_number(10) == "10"
    assert gp.fmt_number(-0.0004) == "0"
    assert gp.fmt_number(1.23456) == "1.235"
    assert gp.fmt_number(1.25, 1) == "1.2"


# --------------------------------------------------------------------------------------------
# line assembly
# --------------------------------------------------------------------------------------------
def test_line_splitter_handles_chunks_crlf_and_noise():
    sp = gp.LineSplitter(max_line=16)
    assert sp.feed(b"o") == []
    assert sp.feed(b"k\r\n<Idle|") == [b"ok"]
    assert sp.feed(b"MPos:0,0,0>\r\nerr") == [b"<Idle|MPos:0,0,0>"]
    assert sp.pending == 3
    noise = sp.feed(b"\xff" * 20)                 # a long run without a line end
    assert noise == [b"err" + b"\xff" * 20] and sp.pending == 0
    assert sp.feed(b"ok\n") == [b"ok"]


# --------------------------------------------------------------------------------------------
# character counting
# --------------------------------------------------------------------------------------------
def test_character_counting_fills_exactly_127_bytes():
    s = gp.CharCountingStreamer()
    assert s.capacity == 127
    line = b"G21 G90 G1 X100 Y100 F3000\n"          # 27 bytes
    tickets = []
    while s.can_send(line):
        tickets.append(s.sent(line))
    assert len(tickets) == 4 and s.bytes_in_flight == 108
    assert not s.can_send(line) and s.can_send(b"G4 P0.01 ;....\n")  # 15 bytes still fit
    with pytest.raises(RuntimeError):
        s.sent(line)
    assert s.acknowledged() == (tickets[0], line)          # oldest first
    assert s.can_send(line) and s.pending == 3
    assert [t for t, _ in s.clear()] == tickets[1:]
    assert s.acknowledged() is None and s.bytes_in_flight == 0


def test_character_counting_rejects_lines_that_can_never_fit():
    s = gp.CharCountingStreamer(rx_buffer_size=16)
    with pytest.raises(ValueError):
        s.can_send(b"G1 X1000 Y1000 F100\n")


def test_character_counting_matches_a_simulated_grbl_rx_buffer():
    """Random line lengths, random ack timing: the controller's buffer never overflows."""
    import random

    rng = random.Random(4)
    s = gp.CharCountingStreamer()
    grbl_rx: list[int] = []
    for _ in range(2000):
        if grbl_rx and rng.random() < 0.4:            # GRBL consumes a line, sends ok
            grbl_rx.pop(0)
            s.acknowledged()
        line = b"G1 X" + b"1" * rng.randrange(1, 40) + b"\n"
        if s.can_send(line):
            s.sent(line)
            grbl_rx.append(len(line))
        assert sum(grbl_rx) <= 127
        assert sum(grbl_rx) == s.bytes_in_flight


# --------------------------------------------------------------------------------------------
# timing
# --------------------------------------------------------------------------------------------
def test_trapezoid_time():
    # 100 mm at 50 mm/s, 500 mm/s^2: two 0.1 s ramps (2.5 mm each) + 95 mm cruise = 2.1 s
    assert gp.trapezoid_time(100, 50, 500) == pytest.approx(2.1)
    # 1 mm cannot reach 50 mm/s: triangle, 2 * sqrt(1/500)
    assert gp.trapezoid_time(1, 50, 500) == pytest.approx(2 * math.sqrt(1 / 500))
    # the two branches meet at d = v^2/a
    d = 50 * 50 / 500
    assert gp.trapezoid_time(d, 50, 500) == pytest.approx(2 * math.sqrt(d / 500))
    assert gp.trapezoid_time(0, 50, 500) == 0.0
    with pytest.raises(ValueError):
        gp.trapezoid_time(1, 0, 500)


def test_move_timeout_scales_and_adds_margin():
    assert gp.move_timeout(100, 50, 500) == pytest.approx(2.1 * 1.5 + 1.0)
    assert gp.move_timeout(0, 50, 500, margin_s=0.2) == pytest.approx(0.2)


def test_axis_limits_bound_vector_speed_and_acceleration():
    s2 = math.sqrt(0.5)
    v, a = gp.axis_limited((s2, s2, 0.0), 1e9, (50.0, 50.0, 10.0), (500.0, 500.0, 10.0))
    assert v == pytest.approx(50 / s2) and a == pytest.approx(500 / s2)
    v, a = gp.axis_limited((1.0, 0.0, 0.0), 20.0, (50.0, 50.0, 10.0), (500.0, 100.0, 1.0))
    assert (v, a) == (20.0, 500.0)
