"""RingLight driver through pyserial on a pseudo-terminal with the ring-light emulator:
lighting, sequences and camera trigger into the bench state, and every injected fault."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import pytest

from rig import ringlight_protocol as rp
from rig.ringlight import (
    RingLight,
    RingLightBusyError,
    RingLightCommandError,
    RingLightConnectionError,
    RingLightError,
    RingLightProtocolError,
    RingLightResetError,
    RingLightSettings,
    RingLightStateError,
    RingLightTimeoutError,
)
from rig.ringlight_protocol import Mode
from rig.sim.bench_state import BenchState
from rig.sim.ringlight_emulator import RingLightEmulator

LEVELS = (200, 210, 220, 230, 240, 250, 100, 110, 120, 130, 140, 150)


def settings(port: str, **kw) -> RingLightSettings:
    base = dict(facet_levels=LEVELS, settle_us=100, trigger_pulse_us=100, hold_us=2000,
                command_timeout_s=0.4, open_timeout_s=1.5)
    base.update(kw)
    return RingLightSettings(port, **base)


@pytest.fixture
def bench():
    return BenchState()


@pytest.fixture
def emu(bench):
    e = RingLightEmulator(bench, boot_delay_s=0.02)
    e.start()
    yield e
    e.stop()


@pytest.fixture
def light(emu):
    lt = RingLight(settings(emu.port))
    lt.open()
    yield lt
    lt.close()


def lit(levels: tuple[int, ...], state: int) -> tuple[int, ...]:
    out = [0] * 12
    for f in rp.facets_of_state(state):
        out[f] = levels[f]
    return tuple(out)


# --------------------------------------------------------------------------------------------
# normal operation
# --------------------------------------------------------------------------------------------
def test_open_identifies_and_applies_settings(light, emu, bench):
    assert light.identity == rp.Identity("DF-RINGLIGHT", rp.FIRMWARE_VERSION, 1, 12, 6)
    assert tuple(emu.levels) == LEVELS
    assert (emu.settle_us, emu.pulse_us, emu.hold_us) == (100, 100, 2000)
    assert light.status() == rp.LightStatus(Mode.IDLE, None, 0, 0, 0, 0)
    assert bench.facet_levels == (0,) * 12 and bench.lit_state is None


def test_manual_state_lights_the_facet_pair(light, bench):
    for k in range(6):
        light.select_state(k)
        assert bench.lit_state == k and bench.facet_levels == lit(LEVELS, k)
    light.set_level(11, 17)                      # changes a lit facet at once
    assert bench.facet_levels[11] == 17 and light.levels()[11] == 17
    assert light.status().mode == Mode.LIT
    light.all_off()
    assert bench.facet_levels == (0,) * 12 and bench.lit_state is None


def test_timing_is_rounded_to_the_firmware_tick(light):
    assert light.set_timing(0, 120, 1001) == rp.Timing(0, 150, 1050)
    assert light.timing() == rp.Timing(0, 150, 1050)
    with pytest.raises(ValueError):
        light.set_timing(0, 100, 50)


def test_sequence_triggers_the_camera_with_each_state(light, bench, emu):
    seen: list[tuple[int, tuple[int, ...], int | None]] = []
    unsubscribe = bench.add_trigger_hook(
        lambda k: seen.append((k, bench.last_trigger.facet_levels, bench.lit_state)))
    assert light.arm(6) == (0, 1, 2, 3, 4, 5)
    assert light.status().mode == Mode.ARMED and bench.lit_state is None
    results = [light.trigger() for _ in range(6)]
    assert [(r.step, r.state) for r in results] == [(k, k) for k in range(6)]
    light.wait_ready()
    time.sleep(0.01)
    assert [s[0] for s in seen] == list(range(6))
    for k, levels, lit_state in seen:                    # lit while the camera is triggered
        assert levels == lit(LEVELS, k) and lit_state == k
    st = light.status()
    assert (st.mode, st.step, st.length, st.triggers) == (Mode.IDLE, 6, 6, 6)
    assert rp.EventLine("DONE", ("6",)) in light.read_events(0.05)
    assert bench.facet_levels == (0,) * 12
    # trigger edges are spaced by at least settle + hold
    times = [f.time for f in emu.fired]
    assert all(b - a >= 0.0021 for a, b in zip(times, times[1:], strict=False))
    unsubscribe()
    light.arm([3])
    light.trigger()
    time.sleep(0.01)
    assert len(seen) == 6                                 # unsubscribed


def test_back_to_back_triggers_wait_for_the_hold(light, emu):
    light.set_timing(0, 100, 150_000)
    light.arm([2, 4])
    t0 = time.monotonic()
    light.trigger()
    light.trigger()                                       # must wait ~150 ms, not fail BUSY
    assert time.monotonic() - t0 >= 0.14
    assert [(f.step, f.state) for f in emu.fired] == [(0, 2), (1, 4)]


def test_sequence_misuse_is_typed(light, emu):
    with pytest.raises(RingLightStateError, match="arm"):
        light.trigger()
    light.arm([1])
    with pytest.raises(RingLightCommandError) as info:   # firmware refuses manual light
        light.select_state(0)
    assert info.value.code == 7 and info.value.name == "ARMED"
    light.set_timing(0, 100, 300_000)        # timing may change while armed, not while BUSY
    light.trigger()
    with pytest.raises(RingLightBusyError) as busy:
        light.set_level(0, 10)
    assert busy.value.code == 5 and "step is running" in str(busy.value)
    with pytest.raises(RingLightStateError, match="already fired"):
        light.trigger()
    light.disarm()
    assert light.status().mode == Mode.IDLE


def test_hardware_trigger_input_and_overrun(light, emu, bench):
    light.set_timing(0, 100, 100_000)
    light.arm(2)
    emu.hardware_trigger()
    time.sleep(0.02)
    emu.hardware_trigger()                                # while the step runs: overrun
    events = light.read_events(0.05)
    assert rp.EventLine("TRIG", ("0", "0")) in events
    assert rp.EventLine("OVERRUN", ("1",)) in events
    assert bench.trigger_count == 1 and light.status().overruns == 1


# --------------------------------------------------------------------------------------------
# connection problems
# --------------------------------------------------------------------------------------------
def test_missing_port_and_loopback():
    with pytest.raises(RingLightConnectionError, match="cannot open the ring-light port"):
        RingLight(settings("/dev/nope")).open()
    with pytest.raises(RingLightConnectionError, match="loopback"):
        RingLight(settings("loop://", open_timeout_s=0.3)).open()


def test_wrong_device_on_the_port_is_named():
    from rig.sim.grbl_emulator import GrblEmulator

    g = GrblEmulator(boot_delay_s=0.02)
    g.start()
    try:
        with pytest.raises(RingLightConnectionError, match="no ring-light controller") as info:
            RingLight(settings(g.port, open_timeout_s=0.5)).open()
        assert "Grbl" in str(info.value) or "error" in str(info.value)
    finally:
        g.stop()


def test_board_without_auto_reset_still_connects(bench):
    e = RingLightEmulator(bench, reset_on_open=False)
    e.start()
    try:
        with RingLight(settings(e.port)) as lt:
            assert lt.status().mode == Mode.IDLE
    finally:
        e.stop()


def test_settings_from_config_section():
    section = SimpleNamespace(port="sim", baudrate=115200, facet_levels=[255] * 12,
                              trigger_pulse_us=150, command_timeout_s=0.7)
    s = RingLightSettings.from_config(section, port="/dev/ttyACM0", hold_us=25000)
    assert s.port == "/dev/ttyACM0" and s.trigger_pulse_us == 150 and s.hold_us == 25000
    assert s.facet_levels == (255,) * 12 and s.command_timeout_s == 0.7


# --------------------------------------------------------------------------------------------
# injected faults
# --------------------------------------------------------------------------------------------
def test_dropped_reply_is_retried_after_resync(light, emu):
    emu.drop_replies(1, "OK LEVEL")
    light.set_level(0, 99)
    assert emu.levels[0] == 99 and light.resyncs == 1


def test_garbled_reply_is_retried(light, emu):
    emu.garble_replies(1, "OK STATUS")
    assert light.status().mode == Mode.IDLE
    assert light.garbage_lines == 1 and light.resyncs == 1
    emu.garble_replies(1, "OK", keep_newline=False)       # noise runs into the next line
    light.select_state(3)
    emu.inject_noise(b"\x00\xfe\x13\xff")
    assert light.status().state == 3


@pytest.mark.parametrize("fault", ["drop", "garble"])
def test_lost_trig_reply_never_skips_or_doubles_a_step(light, emu, bench, fault):
    light.arm(3)
    light.trigger()
    getattr(emu, f"{fault}_replies")(1, "OK TRIG")
    result = light.trigger()
    assert (result.step, result.state) == (1, 1)
    light.trigger()
    light.wait_ready()
    assert [(f.step, f.state) for f in emu.fired] == [(0, 0), (1, 1), (2, 2)]
    assert bench.trigger_count == 3


def test_short_stall_is_ridden_out(light, emu):
    emu.stall(0.2)
    light.select_state(1)
    assert emu.lit_state == 1


def test_endless_stall_times_out_typed(light, emu):
    emu.stall(None)
    t0 = time.monotonic()
    with pytest.raises(RingLightTimeoutError, match="does not answer"):
        light.select_state(2)
    assert time.monotonic() - t0 < 2.0
    emu.unstall()
    light.select_state(2)                                 # usable once it answers again


def test_reboot_while_armed_raises_and_reapplies(light, emu):
    light.set_level(4, 44)
    light.arm(6)
    light.trigger()
    emu.reboot()
    time.sleep(0.1)
    with pytest.raises(RingLightResetError, match="armed sequence was lost"):
        light.trigger()
    assert emu.levels[4] == 44 and emu.hold_us == 2000     # the driver's values are back
    light.arm(6)
    assert light.trigger().step == 0


def test_reboot_while_idle_is_recovered_silently(light, emu):
    emu.reboot()
    time.sleep(0.1)
    light.select_state(0)
    assert tuple(emu.levels) == LEVELS


def test_disconnect_is_a_connection_error(light, emu):
    threading.Timer(0.05, emu.disconnect).start()
    time.sleep(0.15)
    with pytest.raises(RingLightConnectionError):
        light.status()
    with pytest.raises(RingLightConnectionError, match="was lost"):
        light.all_off()
    light.close()


def test_every_light_error_is_a_ring_light_error():
    for cls in (RingLightBusyError, RingLightCommandError, RingLightConnectionError,
                RingLightProtocolError, RingLightResetError, RingLightStateError,
                RingLightTimeoutError):
        assert issubclass(cls, RingLightError)


def test_run_lets_the_board_pace_a_whole_stack(light, emu, bench):
    """RUN: one command, six steps one period apart from the board's own timer."""
    fired = []
    bench.add_trigger_hook(lambda state: fired.append((time.monotonic(), state)))
    light.set_timing(200, 100, 5000)
    assert light.can_run
    light.arm(6)
    first = light.run(0.020)
    assert (first.step, first.state) == (0, 0)
    deadline = time.monotonic() + 2
    while len(fired) < 6 and time.monotonic() < deadline:
        time.sleep(0.005)
    assert [s for _, s in fired] == [0, 1, 2, 3, 4, 5]
    steps = [f for f in emu.fired if f.source == "run"]  # the board's own edge times
    assert [f.state for f in steps] == [0, 1, 2, 3, 4, 5]
    edges = [f.time for f in steps]
    gaps = [b - a for a, b in zip(edges, edges[1:], strict=False)]
    assert all(abs(g - 0.020) < 1e-6 for g in gaps), gaps
    assert light.step_done_at == pytest.approx(first.time + 5 * 0.020 + 0.0052 + 0.002,
                                               abs=1e-6)
    with pytest.raises(RingLightStateError, match="arm"):
        light.run(0.02)  # every step fired
    light.arm(2)
    light.run(0.0001)  # shorter than a step: the board's step (settle + hold) paces it
    time.sleep(0.05)
    assert light.status().mode is Mode.IDLE and len(fired) == 8
    light.identity = rp.Identity("DF-RINGLIGHT", "1.0.0", 1, 12, 6)  # older firmware
    light.arm(1)
    assert not light.can_run
    with pytest.raises(RingLightStateError, match="no RUN"):
        light.run(0.02)
