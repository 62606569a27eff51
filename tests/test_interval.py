"""The bootstrap interval of a mean over cases (brats.evaluate.interval), against hand cases and a plain numpy
percentile bootstrap."""

from __future__ import annotations

import numpy as np
import pytest

from brats.evaluate.interval import bootstrap_ci

# nine per-case Dice values like the demo's test split: one missed tumour at 0
DICE = [0.9, 0.85, 0.0, 0.95, 0.8, 0.88, 0.91, 0.7, 0.93]


def _numpy_bootstrap(values, level=0.95, resamples=200_000, seed=123):
    a = np.asarray(values, dtype=np.float64)
    idx = np.random.default_rng(seed).integers(0, a.size, (resamples, a.size))
    tail = (1 - level) / 2 * 100
    return tuple(np.percentile(a[idx].mean(axis=1), [tail, 100 - tail]))


@pytest.mark.parametrize("values", [DICE, [0.2, 0.9], [1.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0, 1.0]])
def test_matches_a_plain_percentile_bootstrap(values):
    low, high = bootstrap_ci(values)
    ref_low, ref_high = _numpy_bootstrap(values)
    assert low == pytest.approx(ref_low, abs=0.01) and high == pytest.approx(ref_high, abs=0.01)
    assert min(values) <= low < np.mean(values) < high <= max(values)


def test_by_hand_cases():
    assert bootstrap_ci([]) is None and bootstrap_ci([0.7]) is None
    assert bootstrap_ci([0.7, float("nan")]) is None  # one value left after NaN
    assert bootstrap_ci([0.5, 0.5, 0.5]) == (0.5, 0.5)
    # two values: the resampled means are 0.2, 0.55 and 0.9 with chances 1/4, 1/2, 1/4, so the 95 % interval
    # runs from the lowest to the highest
    assert bootstrap_ci([0.2, 0.9]) == pytest.approx((0.2, 0.9))
    with pytest.raises(ValueError, match="confidence level"):
        bootstrap_ci(DICE, level=95)


def test_same_input_same_interval_and_wider_for_fewer_cases():
    assert bootstrap_ci(DICE) == bootstrap_ci(list(DICE))
    few = bootstrap_ci(DICE)
    many = bootstrap_ci(DICE * 4)  # the same spread over four times the cases
    assert many[1] - many[0] < few[1] - few[0]
    assert bootstrap_ci(DICE, level=0.8)[1] - bootstrap_ci(DICE, level=0.8)[0] < few[1] - few[0]
