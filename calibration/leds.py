"""LED balance: per-facet PWM levels so that every illumination state gives the same mean.

Measured facet by facet (the other facet of its pair at 0), not state by state: a state is the
sum of two facets, and balancing only the sum would leave the pair's two sides unequal, which is
a brightness *gradient* across the field (the linear terms of the two facets no longer cancel).
With every facet equal, the states are equal and each pair is symmetric.

The response of facet f is r_f = mean(frame - dark) / level_f on the reference diffuser (PWM is
linear in light per exposure when the exposure spans many PWM periods). Levels are
target / r_f with target = the dimmest facet at full PWM, so no facet is asked for more than
255 and the light stays as bright as it can be balanced. One refinement pass on the measured
state means takes out any non-linearity of a real driver.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

N_FACETS = 12
N_STATES = 6
LEVEL_MAX = 255
DEFAULT_LED_FRAMES = 2
"""Frames per facet: the field mean of one frame is already good to ~0.01 %."""
LED_TOLERANCE = 0.01
"""Refine while the state means spread by more than this ((max - min) / mean)."""
MEASURE_LEVEL = 255
"""PWM at which each facet's response is measured."""


def facet_pair(state: int) -> tuple[int, int]:
    return state, state + N_STATES


def balance_levels(response: Sequence[float], level_max: int = LEVEL_MAX) -> tuple[int, ...]:
    """Integer PWM levels that give every facet the same light: target / response."""
    r = np.asarray(response, dtype=np.float64)
    if r.shape != (N_FACETS,) or not np.all(r > 0):
        raise ValueError(f"need 12 positive facet responses, got {r}")
    target = float(r.min()) * level_max
    return tuple(int(v) for v in np.clip(np.rint(target / r), 1, level_max))


def refine_levels(levels: Sequence[int], state_means: Sequence[float],
                  level_max: int = LEVEL_MAX) -> tuple[int, ...]:
    """Scale both facets of each state by target / measured mean (target = dimmest state,
    keeping every level <= level_max)."""
    m = np.asarray(state_means, dtype=np.float64)
    lv = np.asarray(levels, dtype=np.float64)
    ratio = m.min() / m
    out = lv.copy()
    for k in range(N_STATES):
        for f in facet_pair(k):
            out[f] = lv[f] * ratio[k]
    return tuple(int(v) for v in np.clip(np.rint(out), 1, level_max))


def spread(means: Sequence[float]) -> float:
    m = np.asarray(means, dtype=np.float64)
    return float((m.max() - m.min()) / m.mean())
