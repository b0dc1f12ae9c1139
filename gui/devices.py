"""Manual device commands for the window, run on its device thread.

Each goes through the rig's typed parts (`rig.interfaces`); a snapshot uses `acquire_stack`
for a single state, so the manual panel uses the same tested acquisition path as a scan.
"""

from __future__ import annotations

from rig.camera import Frame
from rig.config import StationConfig
from rig.interfaces import Rig


def jog(rig: Rig, dx: float, dy: float) -> None:
    rig.stage.move_by(dx, dy)


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
