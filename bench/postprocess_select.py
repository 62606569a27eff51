"""Post-processing thresholds scored on the selection cohorts, beside the run's validation cases.

    python bench/postprocess_select.py --name v4-base --run /tmp/gx/v4-base --select-root runs/select-0-8

``brats tune-postprocess`` chooses ``min_component_ml`` and ``et_min_ml`` on a run's validation split: 4 cases in
the demo. This bench asks whether that choice, and the coreless-component rule ``core_min_ml``, hold on the
selection cohorts of a ``bench/generalise.py --select N`` run. It predicts the run's ``checkpoints/best.pt``
without post-processing on the validation cases (``RUN/bench_val_cases``) and on ``select`` and ``select_stress``
(``--select-root``), once (``RUN/bench_raw_*/``, see ``raw_predictions.py``), then scores every combination of
:data:`brats.evaluate.GRID_MIN_COMPONENT_ML` x :data:`brats.evaluate.GRID_ET_MIN_ML` x :data:`GRID_CORE_MIN_ML`
with :func:`brats.evaluate.sweep_postprocess` (the objective of ``tune-postprocess``: mean over cases of
(WT + TC + ET Dice) / 3, BraTS empty rule). ``selection mean`` is the mean of the ``select`` and
``select_stress`` objectives. The test split and the stress cohort are not read.

Prints the rows for: everything off, the run's own thresholds (``RUN/postprocess.json`` when the run tuned them on
validation, else ``predict.postprocess`` of ``RUN/config.yaml``, as with the demo's ``tune: false``), the best on the
validation cases and the best on the selection cohorts; writes every row to
``bench/results/postprocess-select-<name>.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from brats.config import load_config  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
# brats.evaluate and raw_predictions load torch: imported where a sweep needs them, not for --combine
# (docs/training.md runs nine of those)
from results_io import RESULTS, load_now, read_result, write_result  # noqa: E402

GRID_CORE_MIN_ML = (0.0, 0.001, 0.05, 0.2, 0.5, 1.0)
COHORTS = ("val", "select", "select_stress")
KEYS = ("min_component_ml", "et_min_ml", "core_min_ml")


def _load(run: Path, select_root: Path, cohort: str) -> tuple[list, list, list]:
    """Raw predictions (training classes), references and spacings of one cohort; predicts once."""
    from raw_predictions import cohort_root, load_raw, raw_label

    root = cohort_root(run, select_root, cohort)
    return load_raw(run, root, raw_label(select_root, cohort))[1:]


def sweep(run: Path, select_root: Path) -> list[dict]:
    """One row per threshold triple: each cohort's objective and region Dice, and the selection mean."""
    from brats.evaluate import sweep_postprocess

    data = {c: _load(run, select_root, c) for c in COHORTS}
    rows: dict[tuple, dict] = {}
    for core in GRID_CORE_MIN_ML:
        for cohort, (preds, refs, spacings) in data.items():
            for r in sweep_postprocess(preds, refs, spacings, core_min_ml=core):
                row = rows.setdefault(
                    (r["min_component_ml"], r["et_min_ml"], core), dict(zip(KEYS, (*_key(r), core)))
                )
                row[cohort] = {k: round(r[k], 4) for k in ("objective", "dice_WT", "dice_TC", "dice_ET")}
    for row in rows.values():
        row["selection_mean"] = round((row["select"]["objective"] + row["select_stress"]["objective"]) / 2, 4)
    return list(rows.values())


def _key(r: dict) -> tuple[float, float]:
    return r["min_component_ml"], r["et_min_ml"]


def _line(label: str, row: dict) -> str:
    cells = " | ".join(f"{row[c]['objective']:.3f}" for c in COHORTS)
    return f"| {label} | {row['min_component_ml']:g} / {row['et_min_ml']:g} / {row['core_min_ml']:g} | {cells} | {row['selection_mean']:.3f} |"


def run_thresholds(run: Path) -> tuple[str, dict]:
    """The run's own post-processing: chosen on validation (``postprocess.json``) or fixed by its config."""
    tuned = run / "postprocess.json"
    if tuned.is_file():
        return "the run's choice (val)", json.loads(tuned.read_text())
    pp = load_config(run / "config.yaml").predict.postprocess
    return "the run's config", {
        "min_component_ml": pp.min_component_ml,
        "et_min_ml": pp.et_min_ml,
        "core_min_ml": pp.core_min_ml,
    }


def combine(records: dict[str, dict], config: Path) -> str:
    """A Markdown table over several saved results (``{name: record}``, several models): per threshold triple,
    the selection mean of each model and their mean; rows for everything off, ``config``'s
    ``predict.postprocess`` and the triple with the best mean (ties go to the weakest rules); then a line with
    each model's ``select`` objective at ``config``'s thresholds, and their mean."""
    names = list(records)
    results = [rec["result"] for rec in records.values()]
    grids = [{(*_key(r), r["core_min_ml"]): r for r in res["rows"]} for res in results]
    shared = set.intersection(*(set(g) for g in grids))
    mean = {k: sum(g[k]["selection_mean"] for g in grids) / len(grids) for k in shared}
    pp = load_config(config).predict.postprocess
    rows = {
        "off": (0.0, 0.0, 0.0),
        config.name: (pp.min_component_ml, pp.et_min_ml, pp.core_min_ml),
        "best mean": min(shared, key=lambda k: (-mean[k], k[2], k[1], k[0])),
    }
    out = [
        "| row | min_component_ml / et_min_ml / core_min_ml | " + " | ".join(names) + " | mean |",
        "| --- | --- | " + " | ".join("---" for _ in names) + " | --- |",
    ]
    for label, k in rows.items():
        if k not in shared:
            continue
        cells = " | ".join(f"{g[k]['selection_mean']:.3f}" for g in grids)
        out.append(f"| {label} | {k[0]:g} / {k[1]:g} / {k[2]:g} | {cells} | {mean[k]:.3f} |")
    k = rows[config.name]
    if k in shared:
        select = [g[k]["select"]["objective"] for g in grids]
        out.append(
            f"\n{config.name} ({k[0]:g} / {k[1]:g} / {k[2]:g}): select objective "
            + " / ".join(f"{v:.3f}" for v in select)
            + f", mean {sum(select) / len(select):.3f}"
        )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--name", help="result name: bench/results/postprocess-select-<name>.json")
    ap.add_argument("--run", type=Path, help="a bench/generalise.py --select run folder")
    ap.add_argument("--select-root", type=Path, help="its selection cohorts: runs/select-<seed>-<N>")
    ap.add_argument(
        "--combine",
        nargs="+",
        metavar="NAME",
        help="print the selection means of saved results (several models) per threshold triple and their "
        "mean, then the select objective at --config's thresholds; run nothing",
    )
    ap.add_argument(
        "--config", type=Path, default=Path("configs/demo.yaml"), help="--combine: the thresholds to compare"
    )
    args = ap.parse_args(argv)
    if args.combine:
        records = {n: read_result(f"postprocess-select-{n}") for n in args.combine}
        missing = [n for n, rec in records.items() if rec is None]
        if missing:
            print(f"error: no saved result {', '.join(missing)} in {RESULTS}", file=sys.stderr)
            return 2
        print(combine(records, args.config))
        return 0
    if not (args.name and args.run and args.select_root):
        ap.error("--name, --run and --select-root are required (or --combine)")
    from brats.evaluate import GRID_ET_MIN_ML, GRID_MIN_COMPONENT_ML

    before = load_now()
    label, own = run_thresholds(args.run)
    rows = sweep(args.run, args.select_root)
    weakest = lambda r: (r["core_min_ml"], r["et_min_ml"], r["min_component_ml"])  # noqa: E731
    picks = {
        "off": next(r for r in rows if not any(r[k] for k in KEYS)),
        label: next(
            (r for r in rows if _key(r) == _key(own) and r["core_min_ml"] == own.get("core_min_ml", 0.0)),
            None,
        ),
        "best on val": min(rows, key=lambda r: (-r["val"]["objective"], weakest(r))),
        "best on selection": min(rows, key=lambda r: (-r["selection_mean"], weakest(r))),
    }
    print(
        "| row | min_component_ml / et_min_ml / core_min_ml | val | select | select_stress | selection mean |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    picks = {k: v for k, v in picks.items() if v is not None}  # the run's own triple may lie off the grid
    for name, row in picks.items():
        print(_line(name, row))
    payload = {
        "run": str(args.run),
        "select_root": str(args.select_root),
        "grid": {
            "min_component_ml": list(GRID_MIN_COMPONENT_ML),
            "et_min_ml": list(GRID_ET_MIN_ML),
            "core_min_ml": list(GRID_CORE_MIN_ML),
        },
        "picks": {k: {key: v[key] for key in KEYS} for k, v in picks.items()},
        "rows": rows,
    }
    write_result(f"postprocess-select-{args.name}", payload, before)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
