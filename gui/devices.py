"""Manual device commands for the window, run on its device thread.

The rig offers `jog`, `light_state`, `snapshot` and `status` where it has them; otherwise these
fall back to its parts (stage, ring light) and to `acquire_stack` for a single-state snapshot,
so the manual panel uses the same tested acquisition path as a scan.
"""

from __future__ import annotations

from typing import Any


def jog(rig: Any, dx: float, dy: float) -> None:
    fn = getattr(rig, "jog", None)
    if fn is not None:
        fn(dx, dy)
    else:
        rig.stage.move_by(dx, dy)


def home(rig: Any) -> None:
    fn = getattr(rig, "home", None)
    if fn is not None:
        fn()
    else:
        rig.stage.home()


def move_to(rig: Any, xy_mm: tuple[float, float]) -> None:
    rig.move_to(xy_mm)


def light_state(rig: Any, state: int | None) -> None:
    """Light one illumination state (facets k and k + 6), or everything off (None)."""
    fn = getattr(rig, "light_state", None)
    if fn is not None:
        fn(state)
    elif state is None:
        rig.light.all_off()
    else:
        rig.light.select_state(int(state))


def snapshot(rig: Any, cfg: Any, state: int | None) -> Any:
    """One frame under `state` (0 when the lights are off): a Frame with .image and .state."""
    k = 0 if state is None else int(state)
    fn = getattr(rig, "snapshot", None)
    if fn is not None:
        return fn(k)
    cam = cfg.camera
    timeout = cam.exposure_us * 1e-6 + cam.readout_s + cam.frame_timeout_margin_s
    frames = rig.acquire_stack([k], cam.exposure_us, cam.trigger, timeout)
    return list(frames)[0]


def status(rig: Any) -> dict[str, str]:
    """Plain-text status of each device, for the status panel (asks the controllers)."""
    fn = getattr(rig, "status", None)
    if fn is not None:
        st = fn()
        return {k: str(v) for k, v in (st if isinstance(st, dict) else vars(st)).items()}
    out: dict[str, str] = {}
    stage = getattr(rig, "stage", None)
    if stage is not None:
        st = stage.status()
        x, y = st.position
        state = getattr(st, "state", "")
        out["stage"] = f"({x:.2f}, {y:.2f}) mm · {getattr(state, 'value', state)}".strip(" ·")
    light = getattr(rig, "light", None)
    if light is not None:
        ls = light.status()
        lit = getattr(ls, "state", None)
        mode = getattr(getattr(ls, "mode", ""), "value", "")
        out["lights"] = (f"state {lit} on" if lit is not None else "off") + \
            (f" · {str(mode).lower()}" if mode else "")
    camera = getattr(rig, "camera", None)
    if camera is not None:
        info = getattr(camera, "info", None)
        describe = getattr(info, "describe", None)
        out["camera"] = describe() if describe else str(info)
    return out
