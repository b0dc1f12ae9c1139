"""Shared fixtures: a fast simulated station (small sensor, accelerated device time)."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from rig.config import StationConfig, load_config  # noqa: E402


def fast_sim_config(size: int = 512, realtime: bool = False, **sections: dict) -> StationConfig:
    """The bundled sim profile with a small sensor and emulated time running fast."""
    cfg = load_config()
    updates = {
        "camera": cfg.camera.model_copy(update={"width": size, "height": size}),
        "sim": cfg.sim.model_copy(update={"realtime": realtime}),
    }
    for name, values in sections.items():  # e.g. camera={"width": 3504}: applied last
        updates[name] = updates.get(name, getattr(cfg, name)).model_copy(update=values)
    return cfg.model_copy(update=updates)


@pytest.fixture
def sim_config() -> StationConfig:
    return fast_sim_config()
