"""Where each reference class went, per saved ``bench/generalise.py`` result: a diagnostic table, nothing is run.

    python bench/confusion.py --cohort select v14-cb v14-cb-s1 v15-ncr2           # NCR / ED / ET rows
    python bench/confusion.py --cohort select --case BraTS2021_00007 v14-cb v14-cb-s1  # plus a case's Dice

Reads ``bench/results/generalise-<name>.json`` and prints a Markdown table: per result, the fractions of the
cohort's reference NCR, ED and ET voxels (pooled over its cases) that the model called background, NCR, ED and
ET (the ``confusion`` the evaluation records), and, with ``--case`` (repeatable), that case's WT / TC / ET Dice. It says
which error a recipe makes (necrosis called edema, edema called background); no choice is made on it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_io import read_results  # noqa: E402

CLASSES = ("background", "NCR", "ED", "ET")
SHORT = {"background": "bg", "NCR": "NCR", "ED": "ED", "ET": "ET"}


def _row(confusion: dict, ref: str) -> str:
    """``bg / NCR / ED / ET`` percentages of reference class ``ref`` ('-' when the cohort has none of it)."""
    row = (confusion or {}).get(ref)
    if not row:
        return "-"
    return " / ".join(f"{100 * row[p]:.0f}%" for p in CLASSES)


def _case(scores: dict, case: str) -> str:
    per_case = scores.get("per_case") or {}
    if case not in per_case:
        return "-"
    return " / ".join(
        "-" if per_case[case][k] is None else f"{per_case[case][k]:.2f}" for k in ("WT", "TC", "ET")
    )


def table(recs: dict[str, dict], cohort: str, cases: list[str] | None = None) -> str:
    """Markdown table of the ``cohort`` confusion rows (and the Dice of each of ``cases``) of each saved result.

    Raises:
        ValueError: a result without that cohort.
    """
    head = ["result", *(f"{r} -> bg / NCR / ED / ET" for r in ("NCR", "ED", "ET"))]
    head += [f"{case} WT / TC / ET" for case in cases or []]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for name, rec in recs.items():
        scores = rec["result"].get(cohort)
        if scores is None:
            raise ValueError(f"{name} has no cohort {cohort!r}")
        cells = [name, *(_row(scores.get("confusion"), r) for r in ("NCR", "ED", "ET"))]
        cells += [_case(scores, case) for case in cases or []]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "names", nargs="+", metavar="NAME", help="saved results (bench/results/generalise-NAME.json)"
    )
    ap.add_argument("--cohort", default="select", help="val, select, select_stress, test or stress")
    ap.add_argument(
        "--case", action="append", default=[], help="also print this case's WT / TC / ET Dice (repeatable)"
    )
    args = ap.parse_args(argv)
    try:
        print(table(read_results("generalise", args.names), args.cohort, args.case))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
