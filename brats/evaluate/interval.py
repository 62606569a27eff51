"""How far a mean over a few cases can be trusted: a bootstrap confidence interval of the per-case mean.

The demo scores 9 test and 8 stress cases, and one case more or less at Dice 0 moves their mean by a tenth, so a
mean alone reads as more precise than it is. :func:`bootstrap_ci` gives the 95 % percentile bootstrap interval of
the mean over cases (:func:`scipy.stats.bootstrap`, ``method="percentile"``, a fixed seed, so reruns print the
same interval). The percentile method, not BCa: with 5-10 cases, many ties (several cases at Dice 0 or 1) make
BCa's acceleration undefined, and the percentile interval stays defined and inside the range of the values.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence

import numpy as np
from scipy import stats

__all__ = ["CI_LEVEL", "CI_RESAMPLES", "bootstrap_ci"]

#: Confidence level of the intervals in evaluation summaries.
CI_LEVEL = 0.95
#: Bootstrap resamples (scipy's default).
CI_RESAMPLES = 9999

# scipy 1.15 renamed ``random_state`` to ``rng``; the declared minimum (1.10) has only the former.
_RNG_KEYWORD = "rng" if "rng" in inspect.signature(stats.bootstrap).parameters else "random_state"


def bootstrap_ci(
    values: Sequence[float] | np.ndarray,
    level: float = CI_LEVEL,
    n_resamples: int = CI_RESAMPLES,
    seed: int = 0,
) -> tuple[float, float] | None:
    """The percentile bootstrap interval of the mean of ``values`` (NaN left out).

    Returns:
        ``(low, high)``; None for fewer than 2 values (no spread to resample); ``(v, v)`` when every value is
        ``v``.
    """
    if not 0 < level < 1:
        raise ValueError(f"confidence level {level!r}: expected a number between 0 and 1")
    arr = np.asarray(values, dtype=np.float64)
    arr = arr[~np.isnan(arr)]
    if arr.size < 2:
        return None
    if np.all(arr == arr[0]):
        return float(arr[0]), float(arr[0])
    res = stats.bootstrap(
        (arr,),
        np.mean,
        confidence_level=level,
        n_resamples=n_resamples,
        method="percentile",
        vectorized=True,
        **{_RNG_KEYWORD: np.random.default_rng(seed)},
    )
    return float(res.confidence_interval.low), float(res.confidence_interval.high)
