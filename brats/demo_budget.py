"""The demo's training budget, cut where needed so that the whole demo ends within its total (15 minutes).

``brats demo`` trains for 8.5 minutes by default, and the stages around training take what the machine needs: 3.1
minutes on a CPU with bf16, 6.5 on a 2-core EPYC without it (docs/quickstart.md), where the demo ran 4.8 s over
15 minutes. With the default budget (no ``--minutes``), the demo measures its first two stages, estimates the
stages after training from them, and trains for what is left of :data:`TOTAL_MINUTES`, never more than the
configured budget.

The estimate uses the extraction's seconds per case: predicting and scoring a test case (load, N4, asymmetry,
sliding window, metrics) took 1.95 and 2.12 times as long on the two machines of docs/quickstart.md, a stress case
2.52 and 2.43 times as long plus its synthesis. :data:`TEST_FACTOR` and :data:`STRESS_FACTOR` round those up, and
:data:`FIXED_SECONDS` covers the report and training's own setup and last checkpoint, so a machine like either
ends early rather than late.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from brats.config import Config

__all__ = [
    "FIXED_SECONDS",
    "MIN_MINUTES",
    "STRESS_FACTOR",
    "TEST_FACTOR",
    "TOTAL_MINUTES",
    "TrainBudget",
    "describe_budget",
    "fit_budget",
    "fit_run_budget",
]

#: The demo's promise: every stage, synthesis to report, within this many minutes.
TOTAL_MINUTES = 15.0
#: Seconds to predict and score one test case, in extraction seconds per case (measured 1.95 and 2.12).
TEST_FACTOR = 2.5
#: Seconds to predict and score one stress case, in extraction seconds per case, besides its synthesis
#: (measured 2.52 and 2.43).
STRESS_FACTOR = 2.75
#: The report, and training's seconds outside its budget (setup, the last checkpoint).
FIXED_SECONDS = 15.0
#: However slow the machine, the demo trains at least this long.
MIN_MINUTES = 1.0


@dataclass(frozen=True)
class TrainBudget:
    """The training budget chosen after extraction, and how (recorded in ``demo.json``)."""

    minutes: float
    configured_minutes: float
    total_minutes: float
    elapsed_seconds: float
    after_train_seconds: float

    @property
    def cut(self) -> bool:
        return self.minutes < self.configured_minutes

    def to_dict(self) -> dict[str, float | bool]:
        return {
            "minutes": self.minutes,
            "configured_minutes": self.configured_minutes,
            "total_minutes": self.total_minutes,
            "elapsed_seconds": self.elapsed_seconds,
            "estimated_after_train_seconds": self.after_train_seconds,
            "cut": self.cut,
        }


def fit_budget(
    configured_minutes: float,
    elapsed_seconds: float,
    synth_seconds_per_case: float,
    extract_seconds_per_case: float,
    n_test: int,
    n_stress: int,
    total_minutes: float = TOTAL_MINUTES,
) -> TrainBudget:
    """The training budget in minutes: ``configured_minutes``, or less where the demo would end after
    ``total_minutes``; never under :data:`MIN_MINUTES` (nor over ``configured_minutes``). Rounded down to 0.01 min.

    Args:
        configured_minutes: the config's ``train.max_minutes``.
        elapsed_seconds: the demo's seconds so far (synthesis and extraction).
        synth_seconds_per_case, extract_seconds_per_case: those stages' seconds over the cases they handled.
        n_test: test cases to predict; n_stress: stress cases to synthesise and predict (0: none).
    """
    after = (
        (n_test * TEST_FACTOR + n_stress * STRESS_FACTOR) * extract_seconds_per_case
        + n_stress * synth_seconds_per_case
        + FIXED_SECONDS
    )
    left = (60.0 * total_minutes - elapsed_seconds - after) / 60.0
    minutes = min(configured_minutes, max(MIN_MINUTES, int(left * 100) / 100))
    return TrainBudget(
        minutes=minutes,
        configured_minutes=configured_minutes,
        total_minutes=total_minutes,
        elapsed_seconds=round(elapsed_seconds, 1),
        after_train_seconds=round(after, 1),
    )


def fit_run_budget(
    cfg: Config,
    n_cases: int,
    stages: dict[str, float],
    elapsed_seconds: float,
    n_stress: int,
    total_minutes: float,
) -> TrainBudget | None:
    """:func:`fit_budget` for a demo run after its ``synthesise`` and ``extract`` stages (``stages``: their
    seconds, over ``n_cases``), with the test split of ``OUTPUT_DIR/splits.json`` (the validation split where the
    test split is empty, as the demo scores); sets ``cfg.train.max_minutes`` to the result, which it returns
    (None, and nothing changed, for a config without a time budget)."""
    if cfg.train.max_minutes is None:
        return None
    splits = json.loads((Path(cfg.output_dir) / "splits.json").read_text())
    budget = fit_budget(
        cfg.train.max_minutes,
        elapsed_seconds,
        stages["synthesise"] / n_cases,
        stages["extract"] / n_cases,
        len(splits["test"]) or len(splits["val"]),
        n_stress,
        total_minutes,
    )
    cfg.train.max_minutes = budget.minutes
    return budget


def describe_budget(minutes: float | None, budget: TrainBudget | None, short: bool = False) -> str:
    """``8.5 min``, or with a cut ``7.94 min (8.5 configured, cut so that the demo ends within 15 min)``
    (``short``: ``budget 8.5 min``, ``budget 7.94 min: 8.5 cut so that the demo ends within 15 min``);
    ``no time budget`` without one."""
    if minutes is None:
        return "no time budget"
    if budget is None or not budget.cut:
        return f"budget {minutes:g} min" if short else f"{minutes:g} min"
    cut = f"cut so that the demo ends within {budget.total_minutes:g} min"
    if short:
        return f"budget {minutes:g} min: {budget.configured_minutes:g} {cut}"
    return f"{minutes:g} min ({budget.configured_minutes:g} configured, {cut})"
