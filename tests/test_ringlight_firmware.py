"""The firmware sketch and the Python side agree on protocol v1.

1. The constants, error codes, command names, modes and events in
   firmware/ringlight/ringlight.ino are parsed and compared with rig/ringlight_protocol.py.
2. One transcript of commands with their exact expected replies runs against the emulator and
   against the sketch itself, compiled for the host (g++, firmware/ringlight/host/): same bytes.
3. The Python driver runs a 6-state sequence against the host build, and the output trace
   (PWM pins, trigger pin) shows the right facets lit around each trigger pulse.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
import tty
from pathlib import Path

import pytest
import serial

from rig import ringlight_protocol as rp
from rig.ringlight import RingLight, RingLightSettings
from rig.ringlight_protocol import Command, ErrorCode, Event, Mode
from rig.sim.ringlight_emulator import RingLightEmulator

ROOT = Path(__file__).resolve().parents[1]
SKETCH = ROOT / "firmware" / "ringlight" / "ringlight.ino"
HOST_DIR = ROOT / "firmware" / "ringlight" / "host"
SRC = SKETCH.read_text()
MEGA_PWM_PINS = set(range(2, 14)) | {44, 45, 46}


# --------------------------------------------------------------------------------------------
# 1. source-level agreement
# --------------------------------------------------------------------------------------------
def _defines() -> dict[str, str]:
    return dict(re.findall(r"^#define\s+(RL_\w+)\s+(.+?)\s*$", SRC, re.M))


def _c_value(text: str) -> object:
    return text.strip('"') if text.startswith('"') else int(text.rstrip("UL"))


def test_constants_match():
    defs = {k: _c_value(v) for k, v in _defines().items() if not k.startswith("RL_ERR_")}
    assert defs, "no RL_ constants found in the sketch"
    for name, value in defs.items():
        py_name = name[3:]
        assert hasattr(rp, py_name), f"{name} has no counterpart in rig/ringlight_protocol.py"
        assert getattr(rp, py_name) == value, f"{name}: firmware {value!r} != Python " \
                                              f"{getattr(rp, py_name)!r}"
    for py_name in ("DEVICE_NAME", "FIRMWARE_VERSION", "PROTOCOL_VERSION", "BAUDRATE",
                    "NUM_FACETS", "NUM_STATES", "LEVEL_MAX", "MAX_LINE", "TICK_US"):
        assert f"RL_{py_name}" in defs, f"firmware lacks RL_{py_name}"


def test_error_codes_and_names_match():
    codes = {k[7:]: int(v) for k, v in _defines().items() if k.startswith("RL_ERR_")}
    assert codes == {e.name: e.value for e in ErrorCode}
    block = re.search(r"ERR_NAMES\[\]\s*=\s*\{(.*?)\};", SRC, re.S).group(1)
    names = re.findall(r'"(\w*)"', block)
    assert names == [""] + [e.name for e in sorted(ErrorCode, key=int)]


def test_commands_modes_and_events_match():
    table = re.findall(r'\{"([A-Z]+)",\s*cmd\w+\}', SRC)
    assert sorted(table) == sorted(c.value for c in Command)
    assert sorted(re.findall(r'replyOk\("([A-Z]+)"\)', SRC)) == sorted(c.value for c in Command)
    modes = re.search(r"MODE_NAMES\[\]\s*=\s*\{(.*?)\};", SRC, re.S).group(1)
    assert re.findall(r'"(\w+)"', modes) == [m.value for m in Mode]
    assert set(re.findall(r'"EV (\w+)', SRC)) == {e.value for e in Event}


def test_pins_fit_an_arduino_mega():
    pins = [int(p) for p in re.search(r"FACET_PINS\[RL_NUM_FACETS\]\s*=\s*\{(.*?)\};",
                                      SRC).group(1).split(",")]
    assert len(pins) == rp.NUM_FACETS == len(set(pins))
    assert set(pins) <= MEGA_PWM_PINS - {44, 45, 46}     # Timer5 runs the sequencer


# --------------------------------------------------------------------------------------------
# host build of the sketch
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def firmware_binary(tmp_path_factory) -> Path:
    gxx = shutil.which("g++")
    if gxx is None:
        pytest.skip("g++ not found: the host build of the firmware is not exercised")
    out = tmp_path_factory.mktemp("firmware") / "ringlight_host"
    proc = subprocess.run(
        [gxx, "-std=c++17", "-O1", "-Wall", "-I", str(HOST_DIR),
         str(HOST_DIR / "host_main.cpp"), "-o", str(out)],
        capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, f"host build of ringlight.ino failed:\n{proc.stderr}"
    return out


class FirmwareProcess:
    """The host-built firmware with a pty as its serial port (it holds the master side)."""

    def __init__(self, binary: Path, trace: Path) -> None:
        master, slave = os.openpty()
        tty.setraw(slave)
        self.port = os.ttyname(slave)
        os.close(slave)
        self._trace_path = trace
        self._trace = trace.open("w")
        self.proc = subprocess.Popen([str(binary)], stdin=master, stdout=master,
                                     stderr=self._trace)
        os.close(master)

    def trigger_input(self) -> None:
        self.proc.send_signal(signal.SIGUSR1)

    def trace(self) -> list[tuple[int, str, int, int]]:
        out = []
        for line in self._trace_path.read_text().splitlines():
            parts = line.split()
            out.append((int(parts[0]), parts[1], int(parts[2]),
                        int(parts[3]) if len(parts) > 3 else -1))
        return out

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._trace.close()


@pytest.fixture
def firmware(firmware_binary, tmp_path):
    fw = FirmwareProcess(firmware_binary, tmp_path / "trace.txt")
    yield fw
    fw.stop()


@pytest.fixture(params=["emulator", "firmware"])
def device_port(request, tmp_path):
    if request.param == "emulator":
        emu = RingLightEmulator(boot_delay_s=0.02)
        emu.start()
        yield emu.port
        emu.stop()
    else:
        binary = request.getfixturevalue("firmware_binary")
        fw = FirmwareProcess(binary, tmp_path / "trace.txt")
        yield fw.port
        fw.stop()


# --------------------------------------------------------------------------------------------
# 2. one transcript, two implementations
# --------------------------------------------------------------------------------------------
WAIT = object()
TRANSCRIPT: list[tuple[object, object]] = [
    ("ID", "OK ID DF-RINGLIGHT 1.1.0 PROTO=1 FACETS=12 STATES=6"),
    ("STATUS", "OK STATUS MODE=IDLE STATE=- STEP=0 N=0 TRIGS=0 OVR=0"),
    ("level 3 200", "OK LEVEL 3 200"),
    ("LEVEL 3", "OK LEVEL 3 200"),
    ("LEVEL 12 1", "ERR 3 OUT_OF_RANGE facet must be 0..11"),
    ("LEVEL x 1", "ERR 2 BAD_ARGUMENT facet is not a number"),
    ("LEVEL 1 256", "ERR 3 OUT_OF_RANGE level must be 0..255"),
    ("LEVEL 1 -5", "ERR 2 BAD_ARGUMENT level is not a number"),
    ("LEVEL", "ERR 2 BAD_ARGUMENT wrong number of arguments"),
    ("LEVELS", "OK LEVELS 255 255 255 200 255 255 255 255 255 255 255 255"),
    ("LEVELS 1 2 3", "ERR 2 BAD_ARGUMENT wrong number of arguments"),
    ("LEVELS 0 10 20 30 40 50 60 70 80 90 100 110",
     "OK LEVELS 0 10 20 30 40 50 60 70 80 90 100 110"),
    ("FOO 1", "ERR 1 UNKNOWN_COMMAND FOO"),
    ("ID 1", "ERR 2 BAD_ARGUMENT wrong number of arguments"),
    ("  state\t2  ", "OK STATE 2"),
    ("STATUS", "OK STATUS MODE=LIT STATE=2 STEP=0 N=0 TRIGS=0 OVR=0"),
    ("STATE 6", "ERR 3 OUT_OF_RANGE state must be 0..5"),
    ("TRIG", "ERR 6 NOT_ARMED no sequence armed"),
    ("TIMING", "OK TIMING 200 100 30000"),
    ("TIMING 0 120 1001", "OK TIMING 0 150 1050"),
    ("TIMING 0 0 10", "ERR 3 OUT_OF_RANGE pulse must be 1..100000"),
    ("TIMING 0 100 50", "ERR 3 OUT_OF_RANGE hold must be 100..10000000"),
    ("TIMING 100001 100 200", "ERR 3 OUT_OF_RANGE settle must be 0..100000"),
    ("TIMING 0 100 12345678901", "ERR 3 OUT_OF_RANGE hold must be 100..10000000"),
    ("TIMING 1 2", "ERR 2 BAD_ARGUMENT wrong number of arguments"),
    ("ARM 3", "OK ARM 3 0 1 2"),
    ("STATUS", "OK STATUS MODE=ARMED STATE=- STEP=0 N=3 TRIGS=0 OVR=0"),
    ("STATE 1", "ERR 7 ARMED sequence armed"),
    ("ARM 2 5", "ERR 2 BAD_ARGUMENT wrong number of arguments"),
    ("ARM 2 5 6", "ERR 3 OUT_OF_RANGE state must be 0..5"),
    ("ARM 33", "ERR 3 OUT_OF_RANGE sequence length must be 1..32"),
    ("ARM 0", "ERR 3 OUT_OF_RANGE sequence length must be 1..32"),
    ("ARM", "ERR 2 BAD_ARGUMENT wrong number of arguments"),
    ("ARM 8", "OK ARM 8 0 1 2 3 4 5 0 1"),
    ("ARM " + " ".join(["1"] * 35), "ERR 2 BAD_ARGUMENT wrong number of arguments"),
    ("TIMING 0 100 200000", "OK TIMING 0 100 200000"),
    ("ARM 2 5 4", "OK ARM 2 5 4"),
    ("TRIG", "OK TRIG 0 5"),
    ("STATUS", "OK STATUS MODE=BUSY STATE=5 STEP=1 N=2 TRIGS=1 OVR=0"),
    ("TRIG", "ERR 5 BUSY step in progress"),
    ("LEVEL 0 1", "ERR 5 BUSY step in progress"),
    ("ARM 1", "ERR 5 BUSY step in progress"),
    ("LEVEL 5", "OK LEVEL 5 50"),                       # queries work while busy
    (WAIT, 0.3),
    ("STATUS", "OK STATUS MODE=ARMED STATE=- STEP=1 N=2 TRIGS=1 OVR=0"),
    ("TRIG", "OK TRIG 1 4"),
    (WAIT, 0.3),
    ("STATUS", "OK STATUS MODE=IDLE STATE=- STEP=2 N=2 TRIGS=2 OVR=0"),
    ("ARM 1 3", "OK ARM 1 3"),
    ("TRIG", "OK TRIG 0 3"),
    ("OFF", "OK OFF"),                                   # aborts the running step
    ("STATUS", "OK STATUS MODE=IDLE STATE=- STEP=0 N=0 TRIGS=3 OVR=0"),
    ("DISARM", "OK DISARM"),
    ("RUN 100000", "ERR 6 NOT_ARMED no sequence armed"),
    ("TIMING 0 100 50000", "OK TIMING 0 100 50000"),
    ("ARM 3 0 1 2", "OK ARM 3 0 1 2"),
    ("RUN", "ERR 2 BAD_ARGUMENT wrong number of arguments"),
    ("RUN 0", "ERR 3 OUT_OF_RANGE period must be 1..10000000"),
    ("RUN 40000", "ERR 3 OUT_OF_RANGE period shorter than settle + hold"),
    ("RUN 100020", "OK RUN 3 100050"),                  # one step per period, on its own
    ("STATUS", "OK STATUS MODE=BUSY STATE=0 STEP=1 N=3 TRIGS=4 OVR=0"),
    ("TRIG", "ERR 5 BUSY step in progress"),
    (WAIT, 0.45),
    ("STATUS", "OK STATUS MODE=IDLE STATE=- STEP=3 N=3 TRIGS=6 OVR=0"),
    ("X" * 100, "ERR 4 LINE_TOO_LONG line longer than 95 characters"),
    (b"ID\xff", "ERR 8 BAD_CHARACTER non-printable byte in line"),
    ("", None),                                          # empty line: no reply
    ("ID", "OK ID DF-RINGLIGHT 1.1.0 PROTO=1 FACETS=12 STATES=6"),
]


class _Link:
    def __init__(self, port: str) -> None:
        self.ser = serial.serial_for_url(port, baudrate=rp.BAUDRATE, timeout=0.02)
        self.buf = b""
        self.events: list[str] = []

    def line(self, timeout: float) -> str | None:
        deadline = time.monotonic() + timeout
        while True:
            while b"\r\n" in self.buf:
                raw, self.buf = self.buf.split(b"\r\n", 1)
                text = raw.decode("ascii")
                if text.startswith("EV "):
                    self.events.append(text)
                elif text:
                    return text
            if time.monotonic() > deadline:
                return None
            self.buf += self.ser.read(max(1, self.ser.in_waiting))


def test_emulator_and_firmware_answer_byte_for_byte_alike(device_port):
    link = _Link(device_port)
    try:
        for _ in range(50):                        # until the board has booted
            link.ser.write(b"\nID\n")
            if link.line(0.1) is not None:
                break
        time.sleep(0.1)
        link.ser.reset_input_buffer()
        link.buf = b""
        for command, expected in TRANSCRIPT:
            if command is WAIT:
                time.sleep(expected)
                continue
            data = command if isinstance(command, bytes) else command.encode()
            link.ser.write(data + b"\n")
            reply = link.line(0.05 if expected is None else 1.0)
            assert reply == expected, f"{command!r}: got {reply!r}, expected {expected!r}"
        assert "EV DONE 2" in link.events
        assert "EV DONE 1" not in link.events       # the aborted sequence never finished
    finally:
        link.ser.close()


# --------------------------------------------------------------------------------------------
# 3. the driver against the real sketch, checked on its output pins
# --------------------------------------------------------------------------------------------
FACET_PINS = [int(p) for p in re.search(r"FACET_PINS\[RL_NUM_FACETS\]\s*=\s*\{(.*?)\};",
                                        SRC).group(1).split(",")]


def test_driver_runs_a_sequence_on_the_firmware(firmware):
    levels = tuple(100 + 10 * i for i in range(12))
    settle, pulse, hold = 500, 200, 5000
    with RingLight(RingLightSettings(firmware.port, facet_levels=levels, settle_us=settle,
                                     trigger_pulse_us=pulse, hold_us=hold,
                                     command_timeout_s=1.0, open_timeout_s=3.0)) as light:
        assert light.identity.firmware == rp.FIRMWARE_VERSION
        light.arm(6)
        steps = [light.trigger() for _ in range(6)]
        assert [(s.step, s.state) for s in steps] == [(k, k) for k in range(6)]
        light.wait_ready()
        assert rp.EventLine("DONE", ("6",)) in light.read_events(0.1)
        light.arm(1)
        firmware.trigger_input()                    # the external trigger input
        events = light.read_events(0.2)
        assert rp.EventLine("TRIG", ("0", "0")) in events

    trace = firmware.trace()
    rises = [t for t, kind, v, _ in trace if kind == "TRIG" and v == 1]
    falls = [t for t, kind, v, _ in trace if kind == "TRIG" and v == 0]
    assert len(rises) == len(falls) == 7
    tol = 2 * rp.TICK_US
    for k, (rise, fall) in enumerate(zip(rises[:6], falls[:6], strict=True)):
        assert pulse - tol <= fall - rise <= pulse + 20_000
        pwm = {}                                     # output levels at the rising edge
        for t, kind, pin, value in trace:
            if t > rise:
                break
            if kind == "PWM":
                pwm[pin] = value
        lit_pins = {pin: v for pin, v in pwm.items() if v > 0}
        assert lit_pins == {FACET_PINS[k]: levels[k], FACET_PINS[k + 6]: levels[k + 6]}
        on = max(t for t, kind, pin, v in trace
                 if kind == "PWM" and pin == FACET_PINS[k] and v > 0 and t <= rise)
        off = min(t for t, kind, pin, v in trace
                  if kind == "PWM" and pin == FACET_PINS[k] and v == 0 and t > rise)
        assert rise - on >= settle - tol                 # LEDs settle before the trigger
        assert off - rise >= hold - tol                  # and stay lit for the hold
