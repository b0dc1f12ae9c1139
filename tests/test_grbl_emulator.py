"""The GRBL emulator speaks GRBL 1.1 bytes on a pseudo-terminal (raw pyserial, no driver)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import serial

from rig import grbl_protocol as gp
from rig.sim.bench_state import BenchState
from rig.sim.grbl_emulator import GrblEmulator, GrblEmulatorConfig

GREETING = b"Grbl 1.1h ['$' for help]\r\n"


def fast_config(**kw) -> GrblEmulatorConfig:
    base = dict(max_rate_mm_min=(60000.0, 60000.0), accel_mm_s2=(20000.0, 20000.0),
                homing_seek_mm_min=60000.0, homing_feed_mm_min=6000.0)
    base.update(kw)
    return GrblEmulatorConfig(**base)


class Link:
    """A raw pyserial connection with line helpers."""

    def __init__(self, port: str) -> None:
        self.ser = serial.serial_for_url(port, baudrate=115200, timeout=0.02)
        self.buf = b""

    def send(self, data: bytes) -> None:
        self.ser.write(data)

    def until(self, token: bytes, timeout: float = 1.0) -> bytes:
        """Read until ``token`` has arrived; return everything up to and including it."""
        deadline = time.monotonic() + timeout
        while token not in self.buf:
            if time.monotonic() > deadline:
                raise AssertionError(f"{token!r} not received; got {self.buf!r}")
            self.buf += self.ser.read(max(1, self.ser.in_waiting))
        i = self.buf.index(token) + len(token)
        out, self.buf = self.buf[:i], self.buf[i:]
        return out

    def read_available(self) -> bytes:
        """Everything received and not consumed yet."""
        self.buf += self.ser.read(self.ser.in_waiting)
        out, self.buf = self.buf, b""
        return out

    def status(self) -> gp.StatusReport:
        self.send(b"?")
        line = self.until(b">\r\n")
        start = line.rindex(b"<")
        return gp.parse_status(line[start:].strip().decode())

    def close(self) -> None:
        self.ser.close()


@pytest.fixture
def bench():
    return BenchState()


@pytest.fixture
def emu(bench):
    e = GrblEmulator(fast_config(), bench, boot_delay_s=0.02)
    e.start()
    yield e
    e.stop()


@pytest.fixture
def link(emu):
    lk = Link(emu.port)
    lk.until(GREETING)
    lk.until(b"[MSG:'$H'|'$X' to unlock]\r\n")
    yield lk
    lk.close()


def test_greeting_on_open_and_homing_lock(link):
    assert link.status().state is gp.MachineState.ALARM
    link.send(b"G1 X1 F100\n")
    assert link.until(b"\r\n") == b"error:9\r\n"
    link.send(b"$X\n")
    assert link.until(b"ok\r\n") == b"[MSG:Caution: Unlocked]\r\nok\r\n"
    assert link.status().state is gp.MachineState.IDLE


def test_power_up_position_is_zero_until_homed(link, emu, bench):
    rep = link.status()
    assert rep.mpos == (0.0, 0.0, 0.0) and rep.wco == (-200.0, -250.0, 0.0)
    assert bench.stage_xy_mm == pytest.approx((100.0, 125.0))     # physically at the centre
    link.send(b"$H\n")
    link.until(b"ok\r\n", timeout=2.0)
    rep = link.status()
    assert rep.state is gp.MachineState.IDLE
    assert rep.mpos == (-199.0, -249.0, 0.0)                      # switch + 1 mm pull-off
    assert emu.homed and bench.stage_xy_mm == pytest.approx((1.0, 1.0))


def test_build_info_settings_offsets(link):
    link.send(b"$I\n")
    assert link.until(b"ok\r\n") == b"[VER:1.1h.20190830:]\r\n[OPT:V,15,128]\r\nok\r\n"
    link.send(b"$$\n")
    dump = link.until(b"ok\r\n").decode().split("\r\n")
    settings = dict(line.split("=") for line in dump if line.startswith("$"))
    assert settings["$110"] == "60000.000" and settings["$130"] == "200.000"
    assert settings["$13"] == "0" and settings["$22"] == "1"
    link.send(b"$#\n")
    assert b"[G54:-200.000,-250.000,0.000]" in link.until(b"ok\r\n")
    link.send(b"$999=1\n")
    assert link.until(b"\r\n") == b"error:3\r\n"


def test_gcode_errors_use_grbl_codes(link):
    link.send(b"$X\n")
    link.until(b"ok\r\n")
    for line, code in [(b"1 X\n", 1), (b"GX\n", 2), (b"G1 X1\n", 22), (b"G2 X1\n", 20),
                       (b"G0 G1 X1\n", 21), (b"G1 X1 X2 F10\n", 25), (b"G80 X1\n", 31),
                       (b"G4\n", 28), (b"G1 X" + b"1" * 80 + b"\n", 11)]:
        link.send(line)
        assert link.until(b"\r\n") == f"error:{code}\r\n".encode(), line
    link.send(b"\n")
    assert link.until(b"\r\n") == b"ok\r\n"      # an empty line is acknowledged


def home(link: Link) -> None:
    link.send(b"$H\n")
    link.until(b"ok\r\n", timeout=2.0)


def test_motion_takes_trapezoid_time_and_reports_run(link, emu, bench):
    home(link)
    link.send(b"$110=6000\n$111=6000\n$120=1000\n$121=1000\n")  # 100 mm/s, 1000 mm/s^2
    for _ in range(4):
        link.until(b"ok\r\n")
    link.send(b"G21 G90 G1 X21 Y1 F6000\n")                    # 20 mm along x
    t0 = time.monotonic()
    link.until(b"ok\r\n")
    assert link.status().state is gp.MachineState.RUN
    while link.status().state is not gp.MachineState.IDLE:
        time.sleep(0.01)
    elapsed = time.monotonic() - t0
    expected = gp.trapezoid_time(20, 100, 1000)               # 0.3 s
    assert expected - 0.02 < elapsed < expected + 0.15
    rep = link.status()
    assert rep.resolve((-200.0, -250.0, 0.0))[1] == pytest.approx((21.0, 1.0, 0.0))
    assert bench.stage_xy_mm == pytest.approx((21.0, 1.0)) and not bench.stage_moving


def test_feed_hold_resume_and_reset_keep_position(link, emu):
    home(link)
    link.send(b"$110=3000\n$120=500\n")                        # 50 mm/s, 500 mm/s^2
    link.until(b"ok\r\n")
    link.until(b"ok\r\n")
    link.send(b"G1 X100 F3000\n")
    link.until(b"ok\r\n")
    time.sleep(0.3)
    link.send(b"!")
    rep = link.status()
    assert rep.state is gp.MachineState.HOLD and rep.substate == 1   # decelerating
    time.sleep(0.15)
    rep = link.status()
    assert rep.state is gp.MachineState.HOLD and rep.substate == 0   # stopped
    held = rep.mpos
    time.sleep(0.05)
    assert link.status().mpos == held                                   # really stopped
    link.send(b"~")
    assert link.status().state is gp.MachineState.RUN
    link.send(b"!")
    time.sleep(0.2)
    assert link.status().substate == 0
    link.send(b"\x18")                                    # reset after hold: no alarm
    assert link.until(GREETING)
    rep = link.status()
    assert rep.state is gp.MachineState.IDLE and emu.homed
    assert -199.0 < rep.mpos[0] < -100.0


def test_reset_during_motion_is_alarm_3(link, emu):
    home(link)
    link.send(b"$110=3000\n")
    link.until(b"ok\r\n")
    link.send(b"G1 X100 F3000\n")
    link.until(b"ok\r\n")
    time.sleep(0.1)
    link.send(b"\x18")
    out = link.until(b"[MSG:'$H'|'$X' to unlock]\r\n")
    assert out.startswith(b"ALARM:3\r\n") and GREETING in out
    assert link.status().state is gp.MachineState.ALARM and not emu.homed


def test_soft_limit_alarm_blocks_until_reset(link, emu):
    """GRBL 1.1h: ALARM:2, 500 ms of silence (report.c), [MSG:Reset to continue]; a Ctrl-X sent
    before that message is discarded; then nothing, not even `?`, is answered until a new
    Ctrl-X, after which the line that tripped gets its late `ok`, then the banner."""
    home(link)
    t0 = time.monotonic()
    link.send(b"G0 X250\n")
    assert link.until(b"ALARM:2\r\n") == b"ALARM:2\r\n"
    link.send(b"\x18")                          # too early: cleared by the firmware
    got = link.until(b"[MSG:Reset to continue]\r\n")
    assert got == b"[MSG:Reset to continue]\r\n" and time.monotonic() - t0 >= 0.45
    link.send(b"?$X\n")                         # the critical loop answers nothing
    time.sleep(0.3)
    assert link.read_available() == b""
    link.send(b"\x18")
    got = link.until(b"[MSG:'$H'|'$X' to unlock]\r\n")
    assert got.startswith(b"ok\r\n\r\nGrbl 1.1h")
    link.send(b"$X\n")
    link.until(b"ok\r\n")
    assert link.status().state is gp.MachineState.IDLE and emu.homed   # position retained


def test_hard_limit_alarm_has_no_late_ok_and_reset_in_motion_banner_waits(link, emu):
    home(link)
    emu.raise_alarm(1)
    link.until(b"[MSG:Reset to continue]\r\n")
    link.send(b"\x18")
    got = link.until(b"[MSG:'$H'|'$X' to unlock]\r\n")
    assert got.startswith(b"\r\nGrbl 1.1h")    # nothing tripped inside a line: no late ok
    link.send(b"$X\n")
    link.until(b"ok\r\n")
    link.send(b"G1 X100 F300\n")                # a long move, then a reset in motion
    link.until(b"ok\r\n")
    time.sleep(0.1)
    t0 = time.monotonic()
    link.send(b"\x18")
    link.until(b"ALARM:3\r\n")
    link.until(b"Grbl 1.1h")
    assert time.monotonic() - t0 >= 0.45           # the banner after the alarm's 500 ms


def test_rx_buffer_overflows_when_the_host_ignores_character_counting(link, emu):
    home(link)
    link.send(b"$110=600\n$111=600\n")                # slow, so the planner fills up
    link.until(b"ok\r\n")
    link.until(b"ok\r\n")
    lines = b"".join(f"G1 X{2 + i % 2} Y{2 + i % 3} F600\n".encode() for i in range(40))
    link.send(lines)
    time.sleep(0.2)
    assert emu.rx_overflows > 0


def test_wpos_reports_when_status_mask_is_0(link):
    home(link)
    link.send(b"$10=0\n")
    link.until(b"ok\r\n")
    rep = link.status()
    assert rep.mpos is None and rep.wpos == (1.0, 1.0, 0.0)


def test_work_offsets_g10_and_g92(link):
    home(link)
    link.send(b"G10 L2 P1 X-190 Y-240\n")
    link.until(b"ok\r\n")
    rep = link.status()
    assert rep.wco == (-190.0, -240.0, 0.0)              # a changed offset is reported at once
    link.send(b"G92 X0 Y0\n")
    link.until(b"ok\r\n")
    link.send(b"G1 X5 Y5 F6000\n")
    link.until(b"ok\r\n")
    time.sleep(0.1)
    rep = link.status()
    assert rep.mpos == (-194.0, -244.0, 0.0)


def test_dwell_acknowledges_after_motion(link):
    home(link)
    link.send(b"G1 X50 F60000\nG4 P0.05\n")
    link.until(b"ok\r\n")                     # the move is queued
    t0 = time.monotonic()
    link.until(b"ok\r\n")                     # the dwell: after the move and 50 ms
    assert time.monotonic() - t0 >= 0.05
    assert link.status().state is gp.MachineState.IDLE


def test_fault_injection_raw(link, emu):
    home(link)
    emu.drop_replies(1, "ok")
    link.send(b"$X\n$X\n")
    assert link.until(b"ok\r\n") == b"ok\r\n"
    time.sleep(0.05)
    assert link.ser.read(100) == b""              # only one of two oks came
    emu.garble_replies(1, "<")
    link.send(b"?")
    garbled = link.until(b"\r\n")
    assert all(b >= 0x80 for b in garbled[:-2])
    emu.inject("alarm", code=1)
    assert link.until(b"[MSG:Reset to continue]\r\n") == b"ALARM:1\r\n[MSG:Reset to continue]\r\n"
    link.send(b"\x18")                          # out of the critical loop: it answers again
    link.until(b"to unlock]\r\n")
    emu.stall(0.2)
    t0 = time.monotonic()
    link.send(b"?")
    link.until(b">\r\n")
    assert time.monotonic() - t0 > 0.15
    with pytest.raises(ValueError):
        emu.inject("meteor")


def test_disconnect_removes_the_port(emu):
    import os

    lk = Link(emu.port)
    lk.until(GREETING)
    emu.disconnect()
    deadline = time.monotonic() + 1.0
    while os.path.exists(emu.port) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not os.path.exists(emu.port)
    with pytest.raises(serial.SerialException):
        for _ in range(10):
            lk.send(b"?")
            lk.ser.read(10)
    lk.close()


TRANSCRIPT = Path(__file__).parent / "data" / "grbl-1.1h-transcript.txt"


def test_the_emulator_answers_a_recorded_session_byte_for_byte_as_grbl_1_1h(bench):
    """tests/data/grbl-1.1h-transcript.txt: commands and the exact bytes GRBL 1.1h sends."""
    steps = [(line[0], line[2:]) for line in TRANSCRIPT.read_text().splitlines()
             if line and line[0] in "<>*~"]
    emu = GrblEmulator(GrblEmulatorConfig(), bench, boot_delay_s=0.02)
    with emu:
        link = Link(emu.port)
        try:
            for n, (kind, arg) in enumerate(steps):
                if kind == "<":
                    got = link.until(b"\r\n", timeout=2.0)
                    assert got == arg.encode() + b"\r\n", f"step {n}: {arg!r}"
                    continue
                assert link.read_available() == b"", f"unexpected bytes before step {n}"
                if kind == ">":
                    link.send(arg.encode() + b"\n")
                elif kind == "*":
                    link.send(bytes.fromhex(arg))
                else:
                    time.sleep(float(arg))
            time.sleep(0.1)
            assert link.read_available() == b""
        finally:
            link.close()
