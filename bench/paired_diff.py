"""Paired differences between two recipes on the selection cohorts, with a bootstrap interval over cases.

A recipe is chosen on the mean over trained seeds of the selection mean (WT, TC and ET Dice over ``select`` and
``select_stress``) and of the ``select`` objective. Both cohorts of seed ``s`` are the same files for every recipe
trained with that seed, so an arm and its baseline can be compared case by case: the seed-to-seed difficulty of
the cohorts cancels. :func:`paired_lines` prints, for ``ARM:BASE`` (two ``--mean`` groups, members paired by
position), the difference of the two figures and a 95 % percentile bootstrap interval that resamples cases
within each seed and cohort (2,000 resamples, a fixed generator: the same input prints the same line).

The interval is the spread from *which cases* were drawn, with the trained models held fixed; it does not hold
the spread from training the same recipe again with another seed, so it is a lower bound on the uncertainty
of a recipe comparison. The per-seed differences are printed beside it for that reason.
"""

from __future__ import annotations

import numpy as np

__all__ = ["case_objectives", "paired_diff", "paired_lines"]

COHORTS = ("select", "select_stress")
RESAMPLES = 2000


def case_objectives(result: dict, cohort: str) -> dict[str, float]:
    """``{case: (WT + TC + ET) / 3}`` of one cohort of a saved result (its ``per_case`` Dice)."""
    per_case = result.get(cohort, {}).get("per_case")
    if not per_case:
        raise ValueError(f"no per-case scores for {cohort!r}")
    return {case: (v["WT"] + v["TC"] + v["ET"]) / 3 for case, v in per_case.items()}


def _differences(arm: dict, base: dict, label: str) -> dict[str, np.ndarray]:
    """``{cohort: per-case arm - base}``, the cases in a fixed order; the two must score the same cases."""
    out = {}
    for cohort in COHORTS:
        a, b = case_objectives(arm, cohort), case_objectives(base, cohort)
        if set(a) != set(b):
            raise ValueError(f"{label}: the two results scored different {cohort} cases (not the same seed?)")
        out[cohort] = np.array([a[c] - b[c] for c in sorted(a)], dtype=np.float64)
    return out


def paired_diff(pairs: list[dict[str, np.ndarray]], seed: int = 0) -> dict:
    """The paired differences of the selection mean and the ``select`` objective over seeds, with 95 % intervals.

    Args:
        pairs: per seed, ``{cohort: per-case arm - base}`` for ``select`` and ``select_stress``.

    Returns:
        ``{"selection_mean": (diff, low, high), "select_objective": (diff, low, high), "per_seed": [selection
        mean diff of each seed]}``.

    Example:
        >>> d = {"select": np.array([0.1, 0.1]), "select_stress": np.array([0.0, 0.0])}
        >>> paired_diff([d])["selection_mean"]
        (0.05, 0.05, 0.05)
    """
    rng = np.random.default_rng(seed)

    def stats(draws: list[dict[str, np.ndarray]]) -> tuple[float, float]:
        sel = [d["select"].mean() for d in draws]
        both = [(d["select"].mean() + d["select_stress"].mean()) / 2 for d in draws]
        return float(np.mean(both)), float(np.mean(sel))

    boot = np.empty((RESAMPLES, 2))
    for i in range(RESAMPLES):
        draws = [{c: d[c][rng.integers(0, len(d[c]), len(d[c]))] for c in COHORTS} for d in pairs]
        boot[i] = stats(draws)
    point = stats(pairs)
    lo, hi = np.percentile(boot, [2.5, 97.5], axis=0)
    return {
        "selection_mean": (round(point[0], 4), round(float(lo[0]), 4), round(float(hi[0]), 4)),
        "select_objective": (round(point[1], 4), round(float(lo[1]), 4), round(float(hi[1]), 4)),
        "per_seed": [round(stats([d])[0], 4) for d in pairs],
    }


def paired_lines(recs: dict[str, dict], groups: list[str], specs: list[str]) -> str:
    """One line per ``ARM:BASE`` of ``specs``, both labels of ``--mean`` groups (``NAME=R1,R2,...``) of equal size.

    Raises:
        ValueError: a malformed spec, an unknown label, groups of different sizes, or pairs without the same cases.
    """
    members = {}
    for group in groups:
        label, _, names = group.partition("=")
        members[label] = [n for n in names.split(",") if n]
    lines = []
    for spec in specs:
        arm, sep, base = spec.partition(":")
        if not sep or arm not in members or base not in members:
            raise ValueError(f"--paired {spec!r}: expected ARM:BASE naming two --mean groups")
        if len(members[arm]) != len(members[base]):
            raise ValueError(
                f"--paired {spec!r}: the groups have {len(members[arm])} and {len(members[base])} results"
            )
        pairs = [
            _differences(recs[a]["result"], recs[b]["result"], f"--paired {a}:{b}")
            for a, b in zip(members[arm], members[base])
        ]
        out = paired_diff(pairs)
        n = sum(len(p["select"]) + len(p["select_stress"]) for p in pairs)
        fmt = "{:+.3f} (95 % interval over cases {:+.3f} to {:+.3f})"
        lines.append(
            f"{arm} - {base} ({len(pairs)} paired seed(s), {n} cases): selection mean "
            f"{fmt.format(*out['selection_mean'])}, select objective {fmt.format(*out['select_objective'])}; "
            f"selection mean per seed {', '.join(f'{v:+.3f}' for v in out['per_seed'])}"
        )
    return "\n".join(lines)
