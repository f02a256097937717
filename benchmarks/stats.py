"""Statistics shared by the benchmarks."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

BOOTSTRAP = 2000  # resamples per interval


def bootstrap_interval(
    values: np.ndarray, statistic: Callable = np.median, seed: int = 0
) -> tuple[float, float]:
    """Bootstrap 95 % interval of ``statistic`` (``np.median``, ``np.mean``: called with ``axis=1``) of
    ``values`` (N,), resampling the items."""
    values = np.asarray(values)
    rng = np.random.default_rng(seed)
    draws = statistic(values[rng.integers(0, len(values), (BOOTSTRAP, len(values)))], axis=1)
    low, high = np.percentile(draws, [2.5, 97.5])
    return float(low), float(high)
