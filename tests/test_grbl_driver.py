"""GrblStage through pyserial on a pseudo-terminal with the GRBL emulator: moves, streaming,
stop/hold, and every injected fault (typed exception, recovery where safe, never a hang)."""

from __future__ import annotations

import threading
import time

import pytest

from rig.grbl import GrblSettings, GrblStage
from rig.sim.bench_state import BenchState
from rig.sim.grbl_emulator import GrblEmulator, GrblEmulatorConfig
from rig.stage import (
    Stage,
    StageAlarmError,
    StageCommandError,
    StageConnectionError,
    StageError,
    StageLimitError,
    StageMotionError,
    StageProtocolError,
    StageState,
    StageStateError,
    StageTimeoutError,
)

FAST = 1000.0      # mm/s
ACCEL = 20000.0    # mm/s^2


def emulator_config(**kw) -> GrblEmulatorConfig:
    base = dict(max_rate_mm_min=(FAST * 60, FAST * 60), accel_mm_s2=(ACCEL, ACCEL),
                homing_seek_mm_min=FAST * 60, homing_feed_mm_min=6000.0,
                start_xy_mm=(2.0, 2.0))      # near the switches: homing is quick
    base.update(kw)
    return GrblEmulatorConfig(**base)


def settings(port: str, **kw) -> GrblSettings:
    base = dict(max_speed_mm_s=FAST, acceleration_mm_s2=ACCEL, command_timeout_s=0.5,
                boot_timeout_s=1.0, homing_timeout_s=3.0, poll_interval_s=0.01,
                move_timeout_margin_s=0.5)
    base.update(kw)
    return GrblSettings(port, **base)


@pytest.fixture
def bench():
    return BenchState()


@pytest.fixture
def emu(bench):
    e = GrblEmulator(emulator_config(), bench, boot_delay_s=0.02)
    e.start()
    yield e
    e.stop()


@pytest.fixture
def stage(emu):
    s = GrblStage(settings(emu.port))
    s.open()
    yield s
    s.close()


def timed(fn, *a, **kw):
    t0 = time.monotonic()
    out = fn(*a, **kw)
    return out, time.monotonic() - t0


# --------------------------------------------------------------------------------------------
# normal operation
# --------------------------------------------------------------------------------------------
def test_open_checks_version_and_homes(stage, emu, bench):
    assert isinstance(stage, Stage) and stage.is_open
    assert stage.firmware_version == "1.1h"
    assert stage.firmware_settings[110] == FAST * 60
    assert emu.homed
    assert stage.position() == pytest.approx((1.0, 1.0))
    assert bench.stage_xy_mm == pytest.approx((1.0, 1.0))
    st = stage.status()
    assert st.state is StageState.IDLE and st.raw.startswith("<Idle|")


def test_move_to_and_move_by_reach_the_target(stage, bench):
    stage.move_to(120.5, 200.25)
    assert stage.position() == pytest.approx((120.5, 200.25), abs=1e-3)
    assert bench.stage_xy_mm == pytest.approx((120.5, 200.25), abs=1e-3)
    stage.move_by(-20.5, -0.25, speed=500)
    assert stage.position() == pytest.approx((100.0, 200.0), abs=1e-3)
    assert stage.target == (100.0, 200.0)


def test_move_takes_the_profile_time_and_timeout_is_derived(emu):
    # a slow controller: 100 mm/s, 1000 mm/s^2; config says the same
    e = GrblEmulator(emulator_config(max_rate_mm_min=(6000.0, 6000.0),
                                     accel_mm_s2=(1000.0, 1000.0)),
                     boot_delay_s=0.02)
    e.start()
    try:
        with GrblStage(settings(e.port, max_speed_mm_s=100, acceleration_mm_s2=1000)) as s:
            _, dt = timed(s.move_to, 31.0, 1.0)
            assert 0.35 <= dt < 0.6                        # trapezoid: 30/100 + 100/1000
            # a config that overrates the machine: the driver takes the lower $110/$120
            # from $$, so the derived timeout still fits
            s2_settings = settings(e.port, max_speed_mm_s=FAST, acceleration_mm_s2=ACCEL)
        with GrblStage(s2_settings) as s2:
            s2.move_to(61.0, 1.0)
            assert s2.position() == pytest.approx((61.0, 1.0), abs=1e-3)
        # trusting only the config (no $$ check) with a tight margin: the wait must time out
        with GrblStage(settings(e.port, max_speed_mm_s=FAST, acceleration_mm_s2=ACCEL,
                                check_firmware_settings=False, move_timeout_margin_s=0.05,
                                home_on_open=False)) as s3:
            s3.unlock()
            x, y = s3.position()           # not homed: wherever MPos 0 maps to
            with pytest.raises(StageTimeoutError, match="did not reach"):
                s3.move_to(x - 60.0, y)
            s3.wait_idle(timeout=3.0)                       # it does arrive eventually
    finally:
        e.stop()


def test_streaming_many_moves_never_overflows_the_rx_buffer(stage, emu):
    stage.settings.poll_interval_s = 0.01
    points = [(10.0 + (i % 7) * 3.1, 20.0 + (i % 5) * 2.7) for i in range(40)]
    for x, y in points:
        stage.move_to(x, y, speed=FAST, wait=False)
    assert stage.wait_idle() == pytest.approx(points[-1], abs=1e-3)
    assert emu.rx_overflows == 0
    assert sum(1 for line in emu.received_lines if "G1" in line) >= 40


def test_soft_limits_are_checked_before_sending(stage, emu):
    before = len(emu.received_lines)
    with pytest.raises(StageLimitError, match=r"x = 200.001 mm outside 0.000..200.000"):
        stage.move_to(200.001, 10)
    with pytest.raises(StageLimitError, match="y = -999.000 mm"):
        stage.move_by(0, -1000)
    with pytest.raises(StageLimitError, match="speed"):
        stage.move_to(10, 10, speed=0)
    assert len(emu.received_lines) == before
    assert stage.limits.contains(200, 250) and not stage.limits.contains(-0.1, 0)


def test_feed_hold_pauses_and_resume_finishes_the_move(emu):
    e = GrblEmulator(emulator_config(max_rate_mm_min=(6000.0, 6000.0),
                                     accel_mm_s2=(2000.0, 2000.0)), boot_delay_s=0.02)
    e.start()
    try:
        with GrblStage(settings(e.port, max_speed_mm_s=100, acceleration_mm_s2=2000,
                                move_timeout_factor=1.0, move_timeout_margin_s=0.1)) as s:
            def operator():
                time.sleep(0.15)
                s.feed_hold()
                time.sleep(0.6)          # longer than the whole move's timeout budget
                s.resume()

            t = threading.Thread(target=operator)
            t.start()
            s.move_to(61.0, 1.0)         # 60 mm: 0.65 s + 0.6 s paused
            t.join()
            assert s.position() == pytest.approx((61.0, 1.0), abs=1e-3)
    finally:
        e.stop()


def test_stop_from_another_thread_interrupts_and_keeps_position(emu):
    e = GrblEmulator(emulator_config(max_rate_mm_min=(6000.0, 6000.0),
                                     accel_mm_s2=(2000.0, 2000.0)), boot_delay_s=0.02)
    e.start()
    try:
        with GrblStage(settings(e.port, max_speed_mm_s=100, acceleration_mm_s2=2000)) as s:
            threading.Timer(0.2, s.stop).start()
            with pytest.raises(StageMotionError, match="interrupted by stop"):
                s.move_to(150.0, 1.0)
            st = s.status()
            assert st.state is StageState.IDLE and e.homed     # no alarm, still referenced
            assert 5.0 < st.x < 60.0
            assert s.target is None
            s.move_to(10.0, 10.0)                               # usable right away
            s.stop()                                            # idle stop: harmless
            assert s.status().state is StageState.IDLE
    finally:
        e.stop()


def test_context_manager_and_closed_state(emu):
    s = GrblStage(settings(emu.port))
    with s:
        assert s.is_open
    assert not s.is_open
    with pytest.raises(StageStateError, match="not open"):
        s.position()
    s.close()                                                   # twice is fine


# --------------------------------------------------------------------------------------------
# connection problems
# --------------------------------------------------------------------------------------------
def test_missing_port_is_a_clear_connection_error():
    with pytest.raises(StageConnectionError, match="cannot open the GRBL stage port"):
        GrblStage(settings("/dev/does-not-exist")).open()


def test_loopback_is_recognised_quickly():
    s = GrblStage(settings("loop://", boot_timeout_s=0.3, command_timeout_s=0.2))
    _, dt = timed(pytest.raises, StageConnectionError, s.open)
    assert dt < 1.5
    with pytest.raises(StageConnectionError, match="loopback"):
        s.open()
    assert not s.is_open


def test_board_without_auto_reset_is_found_by_probing(bench):
    e = GrblEmulator(emulator_config(), bench, reset_on_open=False)
    e.start()
    try:
        with GrblStage(settings(e.port)) as s:
            assert s.firmware_version == "1.1h"          # from $I, no greeting seen
            assert s.position() == pytest.approx((1.0, 1.0))
    finally:
        e.stop()


def test_old_firmware_and_inch_reports_are_refused(bench):
    for cfg, match in [(emulator_config(version="0.9j"), "GRBL 0.9j"),
                       (emulator_config(report_inches=True), r"inches \(\$13=1\)")]:
        e = GrblEmulator(cfg, bench, boot_delay_s=0.02)
        e.start()
        try:
            with pytest.raises(StageProtocolError, match=match):
                GrblStage(settings(e.port)).open()
        finally:
            e.stop()


def test_controller_error_is_typed_with_grbl_text(bench):
    e = GrblEmulator(emulator_config(homing_enabled=False), bench, boot_delay_s=0.02)
    e.start()
    try:
        with pytest.raises(StageCommandError) as info:
            GrblStage(settings(e.port)).open()
        assert info.value.code == 5 and "$H" in str(info.value)
        assert "Homing is not enabled via settings" in str(info.value)
        with GrblStage(settings(e.port, home_on_open=False)) as s:   # homing disabled: no lock
            s.move_to(5.0, 5.0)
    finally:
        e.stop()


# --------------------------------------------------------------------------------------------
# injected faults
# --------------------------------------------------------------------------------------------
def test_dropped_ok_of_a_move_is_recovered(stage, emu):
    emu.drop_replies(1, "ok")
    stage.move_to(50.0, 60.0)
    assert stage.position() == pytest.approx((50.0, 60.0), abs=1e-3)
    assert stage.lost_replies == 1
    stage.move_to(51.0, 61.0)                                 # stream still in step


def test_dropped_ok_of_unlock_is_verified_by_status(emu, bench):
    with GrblStage(settings(emu.port, home_on_open=False)) as s:
        emu.drop_replies(1, "ok")
        _, dt = timed(s.unlock)
        assert s.status().state is StageState.IDLE and s.lost_replies == 1
        assert dt < 2.0


def test_dropped_ok_of_unverifiable_command_times_out_typed(stage, emu):
    emu.drop_replies(1, "ok")
    with pytest.raises(StageTimeoutError, match="no reply to '\\$I'"):
        stage._read_build_info()
    stage.move_to(20.0, 20.0)                                  # re-synchronised


def test_garbled_replies_are_skipped(stage, emu):
    emu.garble_replies(1, "ok")                                # ok of the move
    stage.move_to(30.0, 30.0)
    emu.garble_replies(2, "<", keep_newline=False)             # noise glued to next lines
    stage.move_to(40.0, 35.0)
    emu.inject_noise(b"\x00\xff\xfe\x81garbage")
    stage.move_to(45.0, 35.0)
    assert stage.position() == pytest.approx((45.0, 35.0), abs=1e-3)
    assert stage.garbage_lines >= 1


def test_short_stall_is_ridden_out(stage, emu):
    emu.stall(0.25)
    _, dt = timed(stage.move_to, 60.0, 60.0)
    assert stage.position() == pytest.approx((60.0, 60.0), abs=1e-3)
    assert dt >= 0.2


def test_endless_stall_times_out_typed(stage, emu):
    emu.stall(None)
    _, dt = timed(pytest.raises, StageTimeoutError, stage.move_to, 150.0, 150.0)
    assert dt < 3.0
    with pytest.raises(StageTimeoutError, match="stopped answering"):
        stage.position()
    emu.unstall()
    stage.wait_idle(timeout=2.0)
    assert stage.position() == pytest.approx((150.0, 150.0), abs=1e-3)


def test_alarm_during_move_rehomes_when_configured(emu, bench):
    e = GrblEmulator(emulator_config(max_rate_mm_min=(6000.0, 6000.0)), bench,
                     boot_delay_s=0.02)
    e.start()
    try:
        with GrblStage(settings(e.port, max_speed_mm_s=100, rehome_after_alarm=True)) as s:
            threading.Timer(0.15, e.raise_alarm, kwargs={"code": 1}).start()
            with pytest.raises(StageAlarmError) as info:
                s.move_to(100.0, 1.0)
            err = info.value
            assert err.code == 1 and err.recovered and "Hard limit" in str(err)
            assert "re-homed" in str(err)
            assert e.homed and s.position() == pytest.approx((1.0, 1.0))
            s.move_to(10.0, 10.0)                              # ready again
    finally:
        e.stop()


def test_alarm_without_rehome_leaves_the_stage_locked(stage, emu):
    stage.settings.rehome_after_alarm = False
    emu.raise_alarm(3)
    with pytest.raises(StageAlarmError) as info:
        stage.move_to(10.0, 10.0)
    assert info.value.code == 3 and not info.value.recovered
    with pytest.raises(StageAlarmError, match="locked"):      # error:9 -> alarm, with a hint
        stage.move_to(10.0, 10.0)
    stage.home()
    stage.move_to(10.0, 10.0)


def test_soft_limit_alarm_is_unlocked_with_position_kept(bench):
    # the controller's travel is shorter than the configured limits: GRBL trips ALARM:2
    e = GrblEmulator(emulator_config(travel_mm=(100.0, 250.0), g54_mm=(-100.0, -250.0)),
                     bench, boot_delay_s=0.02)
    e.start()
    try:
        with GrblStage(settings(e.port)) as s:
            s.move_to(50.0, 50.0)
            with pytest.raises(StageAlarmError) as info:
                s.move_to(150.0, 50.0)
            assert info.value.code == 2 and info.value.recovered
            assert "unlocked" in str(info.value)
            assert s.position() == pytest.approx((50.0, 50.0))
            s.move_to(60.0, 50.0)
    finally:
        e.stop()


def test_power_glitch_is_detected_and_rehomed(stage, emu):
    stage.move_to(80.0, 80.0)
    emu.reboot()
    time.sleep(0.1)
    with pytest.raises(StageAlarmError, match="restarted unexpectedly") as info:
        stage.move_to(90.0, 90.0)
    assert info.value.recovered
    stage.move_to(90.0, 90.0)
    assert stage.position() == pytest.approx((90.0, 90.0), abs=1e-3)


def test_disconnect_is_a_connection_error_and_stays_one(stage, emu):
    threading.Timer(0.05, emu.disconnect).start()
    _, dt = timed(pytest.raises, StageConnectionError, stage.move_to, 190.0, 240.0,
                  speed=100)
    assert dt < 2.0
    with pytest.raises(StageConnectionError, match="was lost"):
        stage.position()
    stage.close()
    assert not stage.is_open


def test_sim_bench_from_the_station_config(bench):
    config = pytest.importorskip("rig.config")
    cfg = config.load_config("sim").stage
    emu_cfg = GrblEmulatorConfig.for_work_limits(
        cfg.x_limits_mm, cfg.y_limits_mm, max_speed_mm_s=cfg.max_speed_mm_s,
        acceleration_mm_s2=cfg.acceleration_mm_s2, time_scale=0.02)   # 50x faster physics
    e = GrblEmulator(emu_cfg, bench, boot_delay_s=0.02)
    e.start()
    try:
        s = GrblSettings.from_config(cfg, port=e.port, poll_interval_s=0.01)
        assert s.port == e.port and s.x_limits_mm == tuple(cfg.x_limits_mm)
        with GrblStage(s) as stage:
            assert stage.limits.x_max == cfg.x_limits_mm[1]
            stage.move_to(cfg.x_limits_mm[1], cfg.y_limits_mm[1])    # the far corner fits
            assert bench.stage_xy_mm == pytest.approx((cfg.x_limits_mm[1], cfg.y_limits_mm[1]))
    finally:
        e.stop()


def test_every_stage_error_is_a_stage_error():
    for cls in (StageAlarmError, StageCommandError, StageConnectionError, StageLimitError,
                StageMotionError, StageProtocolError, StageStateError, StageTimeoutError):
        assert issubclass(cls, StageError)


def test_critical_alarm_with_real_firmware_timing_is_reported_then_recovered(stage, emu):
    """ALARM:1 as GRBL 1.1h does it (500 ms silence, then nothing answered until a reset):
    without automatic recovery a later call says "reset required" (not "disconnected");
    home() resets as the firmware requires (after its prompt) and re-homes."""
    stage.settings.rehome_after_alarm = False
    stage.move_to(20.0, 20.0)
    emu.raise_alarm(1)
    with pytest.raises(StageAlarmError) as info:
        stage.move_to(30.0, 20.0)
    assert info.value.code == 1 and not info.value.recovered
    with pytest.raises(StageAlarmError, match="critical alarm .*reset required"):
        stage.status()
    t0 = time.monotonic()
    stage.home()
    assert time.monotonic() - t0 < stage.settings.homing_timeout_s
    stage.move_to(30.0, 20.0)
    assert stage.position() == pytest.approx((30.0, 20.0), abs=1e-3)


# ---- jogging ($J=, 0x85, G4 P0) ---------------------------------------------------------------

def test_a_jog_moves_relative_and_leaves_the_parser_modes_alone(stage, emu, bench):
    stage.move_to(50.0, 60.0)
    assert stage.jog(5.0, -2.5, speed=200) == pytest.approx((55.0, 57.5))
    assert stage.wait_idle() == pytest.approx((55.0, 57.5), abs=1e-3)
    assert any(line == "$J=G21 G91 X5 Y-2.5 F12000" for line in emu.received_lines)
    stage.move_to(10.0, 10.0)  # absolute after a G91 jog: the jog's G91 was not modal
    assert bench.stage_xy_mm == pytest.approx((10.0, 10.0), abs=1e-3)


def test_jog_cancel_stops_short_and_the_next_absolute_move_is_exact(stage, emu, bench):
    stage.move_to(20.0, 20.0)
    stage.jog(150.0, 0.0, speed=100)  # 1.5 s at 100 mm/s: released after 0.3 s
    time.sleep(0.3)
    assert emu.state == "Jog"
    x, y = stage.jog_cancel()
    assert 25.0 < x < 100.0 and y == pytest.approx(20.0, abs=1e-3)
    assert emu.state == "Idle" and bench.stage_xy_mm == pytest.approx((x, y), abs=1e-3)
    assert emu.received_lines[-1] == "G4 P0"  # synchronised before anything else is sent
    stage.move_to(30.0, 40.0)
    assert bench.stage_xy_mm == pytest.approx((30.0, 40.0), abs=1e-3)
    assert stage.jog_cancel() == pytest.approx((30.0, 40.0), abs=1e-3)  # no jog: harmless


def test_a_jog_beyond_grbl_travel_is_its_error_15_and_nothing_moves(bench):
    e = GrblEmulator(emulator_config(travel_mm=(150.0, 250.0)), bench, boot_delay_s=0.02)
    with e:  # the station allows 0..200 in x, the firmware only 150 ($130)
        s = GrblStage(settings(e.port, check_firmware_settings=False))
        with s:
            s.move_to(100.0, 10.0)
            with pytest.raises(StageLimitError, match=r"beyond the travel GRBL.*Jog target "
                                                      r"exceeds machine travel.*\$130"):
                s.jog(80.0, 0.0)
            assert e.state == "Idle" and s.position() == pytest.approx((100.0, 10.0), abs=1e-3)


def test_a_jog_while_a_move_runs_is_refused_as_not_idle(stage, emu):
    stage.move_to(190.0, 240.0, speed=200, wait=False)
    time.sleep(0.05)
    with pytest.raises(StageStateError, match="only jogs when idle"):
        stage.jog(1.0, 0.0)
    stage.wait_idle()


def test_emulator_locks_gcode_while_jogging_and_a_feed_hold_cancels_the_jog(stage, emu):
    stage.move_to(20.0, 20.0)
    stage.jog(150.0, 0.0, speed=100)
    time.sleep(0.1)
    with pytest.raises(StageAlarmError, match="locked"):  # error:9 while in Jog
        stage.move_to(30.0, 30.0, wait=False)
        stage.wait_idle()
    stage.feed_hold()
    deadline = time.monotonic() + 3
    while emu.state != "Idle" and time.monotonic() < deadline:
        time.sleep(0.02)
    assert emu.state == "Idle"  # no Hold: a hold during a jog is a jog cancel
    x, _ = stage.jog_cancel()
    stage.move_to(x, 30.0)


def test_port_is_found_again_by_the_adapters_serial_number(emu):
    """A re-plugged USB adapter may come back as another ttyUSB: with `serial_number` the
    driver looks it up at every open (pyserial's list_ports entries)."""
    from serial.tools.list_ports_common import ListPortInfo

    from rig.serial_link import port_for_serial_number

    def entry(device: str, serial: str | None) -> ListPortInfo:
        info = ListPortInfo(device, skip_link_detection=True)
        info.serial_number = serial
        return info

    ports = [entry("/dev/ttyUSB3", "A50285BI"), entry("/dev/ttyACM0", None),
             entry("/dev/ttyUSB1", "FT9XK2")]
    assert port_for_serial_number("A50285BI", ports) == "/dev/ttyUSB3"
    assert port_for_serial_number("NOPE", ports) is None
    # not plugged in and no fallback port: a clear error naming the serial number
    stage = GrblStage(GrblSettings(port="", serial_number="NOPE-123"))
    with pytest.raises(StageConnectionError, match="serial number 'NOPE-123'"):
        stage.open()
