"""Manual device commands for the window, run on its device thread.

Each goes through the rig's typed parts (`rig.interfaces`); a snapshot uses `acquire_stack`
for a single state, so the manual panel uses the same tested acquisition path as a scan.
"""

from __future__ import annotations

from rig.camera import Frame
from rig.config import StationConfig
from rig.interfaces import Rig

HOLD_JOG_SPEED_MM_S = 10.0
"""Press-and-hold jog speed: slow enough to let go on a feature seen in the live image."""


def jog(rig: Rig, dx: float, dy: float) -> None:
    """A step jog (one click): ``$J=`` by (dx, dy) mm, returning once the stage is there."""
    rig.stage.jog(dx, dy)
    rig.stage.wait_idle()


def jog_hold(rig: Rig, ux: int, uy: int) -> None:
    """Start jogging along (ux, uy) (each -1, 0 or 1) towards the soft limit; the stage moves
    until `jog_release` (button released) or the limit. Returns at once."""
    x, y = rig.stage.position()
    lim = rig.stage.limits
    dx = (lim.x_max - x if ux > 0 else lim.x_min - x) if ux else 0.0
    dy = (lim.y_max - y if uy > 0 else lim.y_min - y) if uy else 0.0
    if abs(dx) > 1e-3 or abs(dy) > 1e-3:
        rig.stage.jog(dx, dy, speed=HOLD_JOG_SPEED_MM_S)


def jog_release(rig: Rig) -> tuple[float, float]:
    """Stop a held jog where the stage is (jog cancel); returns the position."""
    return rig.stage.jog_cancel()


def home(rig: Rig) -> None:
    rig.stage.home()


def move_to(rig: Rig, xy_mm: tuple[float, float]) -> None:
    rig.move_to(xy_mm)


def light_state(rig: Rig, state: int | None) -> None:
    """Light one illumination state (facets k and k + 6), or everything off (None)."""
    if state is None:
        rig.light.all_off()
    else:
        rig.light.select_state(int(state))


def snapshot(rig: Rig, cfg: StationConfig, state: int | None) -> Frame:
    """One frame under `state` (0 when the lights are off)."""
    k = 0 if state is None else int(state)
    cam = cfg.camera
    timeout = cam.exposure_us * 1e-6 + cam.readout_s + cam.frame_timeout_margin_s
    return rig.acquire_stack([k], cam.exposure_us, cam.trigger, timeout)[0]


def status(rig: Rig) -> dict[str, str]:
    """Plain-text status of each device, for the status panel (asks the controllers)."""
    st = rig.stage.status()
    x, y = st.position
    ls = rig.light.status()
    lights = f"state {ls.state} on" if ls.state is not None else "off"
    return {"stage": f"({x:.2f}, {y:.2f}) mm · {st.state.value}",
            "lights": f"{lights} · {ls.mode.value.lower()}",
            "camera": rig.camera.info.describe()}
