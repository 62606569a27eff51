"""Generalisation bench: train the demo recipe, score validation cases, the test split and a stress cohort.

    python bench/generalise.py --name after                          # brats demo defaults
    python bench/generalise.py --name no-gamma --set augment.gamma.enabled=false
    python bench/generalise.py --name ne4 --profile-set non_enhancing_per_20=4   # the demo cohort's synth profile
    python bench/generalise.py --name before --score-run runs/old-demo   # score an existing demo run only
    python bench/generalise.py --table before after                     # Markdown table of saved results
    python bench/generalise.py --table a a-s1 b b-s1 --mean a=a,a-s1 --mean b=b,b-s1   # plus means over seeds
    python bench/generalise.py --table a a-s1 b b-s1 --mean a=a,a-s1 --mean b=b,b-s1 --paired b:a   # b - a, paired
    python bench/generalise.py --table a b --by-size    # WT Dice by reference tumour volume, selection cohorts
    python bench/generalise.py --name e8-patch --score-run /tmp/gx/v7-e8 --predict windows=patch --select 8

Prints one JSON object (also written to ``bench/results/generalise-<name>.json``): per cohort (``val``: the
run's validation cases; ``test``: its test split; ``stress``: ``--stress-cases`` cases of
``brats synth --profile stress`` with seed demo seed + 1000) the mean Dice of WT, TC, ET (and NCR, ED), the
lesion-wise F1 (TP/FP/FN summed over cases, official rules), the pooled precision and recall of WT, TC, ET
(``pooled``) and where each reference class went (``confusion``, fractions of its voxels); plus the config
overrides, epochs trained (and every ``metrics.csv`` row: ``metrics_per_epoch``), stage times, the wall time of
the scoring done here (``scoring_seconds``), machine, CPU flags, date and load. Recipes are compared on ``val``
and, with ``--select``, on the selection cohorts below; ``test`` and ``stress`` are reported, never used for a
choice.

``--select N`` adds two selection cohorts, the same for every recipe whatever its case count: ``select``, N
train-profile cases (seed + 2000), and ``select_stress``, N stress-profile cases (seed + 3000). They are never
trained on and are not the reported test or stress cohorts, so robustness choices (augmentation, case count)
can be made on them. They are generated once under ``runs/select-<seed>-<N>[-<X>x<Y>x<Z>]/`` (the shape only
with ``--shape``) and reused;
the ``done`` file records the synth profile, and a cohort made with other settings is refused in one line
(``bench/cached_cohort.py``).

``--predict KEY=VALUE`` (repeatable) scores with prediction settings other than the checkpoint's (keywords of
``brats.predict.run_predict``: ``windows``, ``tta``, ``overlap``, ...); every cohort is then predicted again,
into ``<run>/bench_<cohort>-<name>``, so a prediction choice is measured on a trained run without retraining.
``--checkpoint last`` scores the run's final weights (``last.pt``) instead of ``best.pt`` the same way.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from brats.cli.wait_policy import DEMO, trains_alone  # noqa: E402  (loads no torch)
from brats.config import shipped_config  # noqa: E402


def _overrides(argv: list[str]) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == "--set"]


# OpenMP's wait policy as `brats demo` chooses it for the recipe (brats/cli/wait_policy.py), before torch loads
if not trains_alone(shipped_config(DEMO), _overrides(sys.argv)):
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

sys.path.insert(0, str(Path(__file__).resolve().parent))
# Only what --table needs loads here (no torch): docs/training.md runs about eighty --table commands, and torch's
# import was most of each one's 2-3 s. Training and scoring import brats.demo & co. where they use them.
from generalise_table import seed_means, table  # noqa: E402
from paired_diff import paired_lines  # noqa: E402
from results_io import load_now, read_results, write_result  # noqa: E402
from size_bins import size_table  # noqa: E402

#: Seeds of the selection cohorts (train and stress profile), away from the demo's (seed) and stress (seed + 1000).
SELECT_SEED_OFFSET = {"select": 2000, "select_stress": 3000}


def cohort_scores(scored: dict) -> dict:
    from brats.evaluate import report_rows

    rows = report_rows(scored["summary"])[0]
    out = {r["name"]: None if r.get("dice") is None else round(r["dice"], 4) for r in rows}
    out |= {f"lesion_{k}": v for k, v in scored["lesion"].items() if k.endswith("_f1")}
    out["cases"] = scored["summary"]["per_case"]["WT"]["dice"]["count"]
    out["pooled"] = pooled_precision_recall(scored["summary"])
    out["confusion"] = confusion_fractions(scored["summary"])
    out["per_case"] = _per_case(Path(scored["summary"]["files"]["cases_csv"]))
    return out


def pooled_precision_recall(summary: dict) -> dict:
    """``{region: {"precision", "recall"}}`` of WT, TC and ET over all voxels of the cohort (an evaluation
    summary's ``pooled`` counts), so that a result says whether missed tumour was called background or another
    class: core called edema keeps WT recall, core called background lowers it."""
    pooled = summary.get("pooled", {})
    return {
        k: {m: None if pooled[k].get(m) is None else round(pooled[k][m], 4) for m in ("precision", "recall")}
        for k in ("WT", "TC", "ET")
        if k in pooled
    }


def confusion_fractions(summary: dict) -> dict | None:
    """``{reference class: {predicted class: fraction of its voxels}}`` over the cohort (the evaluation
    summary's pooled ``confusion``; None from a summary written before it existed, or a class absent from every
    reference), e.g. ``["NCR"]["ED"]``: the share of necrosis called edema."""
    conf = summary.get("confusion")
    if not conf:
        return None
    names = conf["classes"]
    return {
        ref: None if row is None else {p: round(v, 4) for p, v in zip(names, row)}
        for ref, row in zip(names, conf["row_fraction"])
    }


def _per_case(cases_csv: Path) -> dict:
    """``{case: {"WT", "TC", "ET": Dice, "WT_ml": reference whole-tumour mL}}`` from an evaluation's cases.csv, so
    that runs with different splits can be compared on the cases they share."""
    if not cases_csv.is_file():
        return {}
    with open(cases_csv, newline="") as fh:
        rows = list(csv.DictReader(fh))

    def num(value: str) -> float | None:
        return None if value in ("", "nan") else round(float(value), 4)

    keys = {"WT": "WT_dice", "TC": "TC_dice", "ET": "ET_dice", "WT_ml": "WT_vol_ref_ml"}
    return {r["case"]: {k: num(r[col]) for k, col in keys.items()} for r in rows}


def _epochs(run: Path) -> list[dict]:
    with open(run / "metrics.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def _scored(run: Path, sub: str, root: Path, checkpoint: Path | None = None) -> dict | None:
    """The demo's own scores of a cohort (``run/sub/evaluation``), when it wrote them after ``checkpoint`` was
    written (scores older than the checkpoint are another model's, e.g. a ``stress`` folder linked from another
    run); None otherwise."""
    from brats.demo import lesion_summary

    summary = run / sub / "evaluation" / "summary.json"
    if not summary.is_file():
        return None
    if (
        checkpoint is not None
        and checkpoint.is_file()
        and summary.stat().st_mtime < checkpoint.stat().st_mtime
    ):
        return None
    scored = json.loads(summary.read_text())
    return {"summary": scored, "lesion": lesion_summary(scored)}


#: run_predict keywords that --predict may set
PREDICT_KEYS = (
    "windows",
    "tta",
    "overlap",
    "blend",
    "min_component_ml",
    "et_min_ml",
    "core_min_ml",
    "fragment_ml",
    "postprocess",
    "decode",
    "region_thresholds",
)


def parse_predict(items: list[str]) -> dict[str, Any]:
    """``["windows=patch", "tta=true"]`` -> ``{"windows": "patch", "tta": True}`` (values read as YAML).

    Raises:
        ValueError: an item without ``=`` or a key not in :data:`PREDICT_KEYS`.
    """
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or key not in PREDICT_KEYS:
            raise ValueError(
                f"--predict {item!r}: expected KEY=VALUE with KEY one of {', '.join(PREDICT_KEYS)}"
            )
        out[key] = yaml.safe_load(value)
    return out


def score_run(
    run: Path,
    seed: int,
    stress_cases: int,
    shape,
    workers: int,
    predict: dict | None = None,
    tag: str = "",
    checkpoint: str = "best",
) -> dict:
    """Score the run's ``checkpoint`` (``best`` or ``last``) on its validation cases, its test split and a stress
    cohort (reusing the demo's own test and stress scores when it wrote them, unless ``predict`` settings or the
    last checkpoint are given; the scores then go to ``bench_<cohort><tag>``)."""
    from brats.data import discover_cases
    from brats.demo import STRESS_SEED_OFFSET, _link_cases, score_cohort
    from brats.synth import generate_cohort

    splits = json.loads((run / "splits.json").read_text())
    cases = {c.case_id: c for c in discover_cases(run / "cases")}
    ckpt = run / "checkpoints" / f"{checkpoint}.pt"
    out: dict = {}
    reuse = not predict and checkpoint == "best"  # the demo scored best.pt with its own settings
    predict = predict or {}
    for name in ("val", "test"):
        root = _link_cases([cases[i].folder for i in splits[name]], run / f"bench_{name}_cases")
        own = _scored(run, ".", root, ckpt) if name == "test" and reuse else None
        out[name] = cohort_scores(own or score_cohort(ckpt, root, run / f"bench_{name}{tag}", **predict))
    stress_root = run / "stress" / "cases"
    own = _scored(run, "stress", stress_root, ckpt) if stress_root.is_dir() and reuse else None
    if own is None and not stress_root.is_dir():
        generate_cohort(
            stress_root, stress_cases, seed + STRESS_SEED_OFFSET, "2021", workers, shape, profile="stress"
        )
    out["stress"] = cohort_scores(
        own or score_cohort(ckpt, stress_root, run / f"bench_stress{tag}", **predict)
    )
    return out


def score_select(
    run: Path,
    seed: int,
    n: int,
    shape,
    workers: int,
    predict: dict | None = None,
    tag: str = "",
    checkpoint: str = "best",
) -> dict:
    """Score the run's ``checkpoint`` (``best`` or ``last``) on the two selection cohorts (generated once, shared
    by every run)."""
    from cached_cohort import cached_cohort

    from brats.demo import score_cohort

    out: dict = {}
    ckpt = run / "checkpoints" / f"{checkpoint}.pt"
    for name, offset in SELECT_SEED_OFFSET.items():
        grid = "" if shape is None else "-" + "x".join(str(int(v)) for v in shape)
        root = Path("runs") / f"select-{seed}-{n}{grid}" / name
        profile = "stress" if name == "select_stress" else "train"
        cached_cohort(root, n, seed + offset, profile, workers, shape)
        out[name] = cohort_scores(score_cohort(ckpt, root, run / f"bench_{name}{tag}", **(predict or {})))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--name", help="result name: bench/results/generalise-<name>.json")
    ap.add_argument(
        "--table", nargs="+", metavar="NAME", help="print a Markdown table of saved results; run nothing"
    )
    ap.add_argument(
        "--mean", action="append", default=[], metavar="NAME=R1,R2", help="with --table: means over seeds"
    )
    ap.add_argument(
        "--paired",
        action="append",
        default=[],
        metavar="ARM:BASE",
        help="with --mean: the paired difference of two groups on the selection cohorts, with a bootstrap interval",
    )
    ap.add_argument(
        "--by-size",
        action="store_true",
        help="with --table: WT Dice of the selection cohorts by reference tumour volume (bench/size_bins.py)",
    )
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    ap.add_argument(
        "--profile-set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="setting of the demo cohort's synth profile (the train profile with brats.demo.DEMO_PROFILE_SETTINGS;"
        " these on top)",
    )
    ap.add_argument("--output-dir", default=None, help="run folder (default runs/generalise-<name>)")
    ap.add_argument("--cases", type=int, default=None, help="demo cases (default: the demo's)")
    ap.add_argument(
        "--minutes",
        type=float,
        default=None,
        help="training budget (default: the demo's configured one, never cut to fit the demo's 15 minutes, so "
        "that recipes compare on equal training time)",
    )
    ap.add_argument("--stress-cases", type=int, default=8)
    ap.add_argument(
        "--select", type=int, default=0, metavar="N", help="score N+N selection cases (see above)"
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--shape", type=int, nargs=3, default=None)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--score-run", default=None, help="score this existing demo run folder; train nothing")
    ap.add_argument(
        "--checkpoint",
        choices=("best", "last"),
        default="best",
        help="which checkpoint of the run to score: best.pt (train.best_metric's choice) or last.pt (the final epoch)",
    )
    ap.add_argument(
        "--predict", action="append", default=[], metavar="KEY=VALUE", help="prediction setting for scoring"
    )
    args = ap.parse_args(argv)
    try:
        predict = parse_predict(args.predict)
    except ValueError as exc:
        ap.error(str(exc))
    tag = f"-{args.name}" if predict or args.checkpoint != "best" else ""
    if args.table:
        try:
            recs = read_results("generalise", args.table)
            means = seed_means(recs, args.mean)
            if args.paired:
                means += "\n" + paired_lines(recs, args.mean, args.paired)
            if args.by_size:
                means += ("\n\n" if means else "") + size_table(recs)
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print(table(recs) + ("\n\n" + means if means else ""))
        return 0
    if not args.name:
        ap.error("--name is required (or --table)")
    from brats.demo import DEFAULT_MINUTES, DEMO_PROFILE_SETTINGS, run_demo
    from brats.errors import BratsError
    from brats.synth import with_settings

    shape = tuple(args.shape) if args.shape else None
    load_before = load_now()
    result: dict = {"name": args.name, "overrides": args.set} | ({"predict": predict} if predict else {})
    if args.checkpoint != "best":
        result["checkpoint"] = args.checkpoint
    bad = [item for item in args.profile_set if "=" not in item]
    if args.profile_set and args.score_run:
        ap.error("--profile-set sets the cohort a run trains on; --score-run trains nothing")
    if bad:
        ap.error(f"--profile-set {bad[0]!r}: expected KEY=VALUE")
    settings = dict(item.split("=", 1) for item in args.profile_set)
    try:
        profile = with_settings("train", DEMO_PROFILE_SETTINGS | settings)
    except BratsError as exc:
        ap.error(f"--profile-set: {exc}")
    if settings:
        result["profile_set"] = settings
    if args.score_run:
        run = Path(args.score_run)
        if (run / "demo.json").is_file():
            demo_json = json.loads((run / "demo.json").read_text())
            result["seconds"] = demo_json["seconds"]
            if "synth_profile" in demo_json:  # demos before the fourteenth round did not record it
                result["synth_profile"] = demo_json["synth_profile"]
    else:
        run = Path(args.output_dir or f"runs/generalise-{args.name}")
        demo = run_demo(
            run,
            n_cases=args.cases,
            minutes=DEFAULT_MINUTES if args.minutes is None else args.minutes,
            seed=args.seed,
            shape=shape,
            workers=args.workers,
            stress_cases=args.stress_cases,
            overrides=args.set,
            profile=profile,
        )
        result["seconds"] = demo["seconds"]
        result["synth_profile"] = demo["synth_profile"]
    result["run"] = str(run)
    epochs = _epochs(run)
    result["epochs"] = len(epochs)
    # None for an epoch that was not validated (train.val_every)
    result["val_dice_mean_per_epoch"] = [
        round(float(e["val_dice_mean"]), 4) if e["val_dice_mean"] else None for e in epochs
    ]
    # every metrics.csv column per epoch (per-class validation Dice, seconds, lr), so that when a class was learnt
    # can be read from the committed result rather than from the run folder
    result["metrics_per_epoch"] = [{k: round(float(v), 6) for k, v in e.items() if v} for e in epochs]
    start = time.perf_counter()
    result |= score_run(run, args.seed, args.stress_cases, shape, args.workers, predict, tag, args.checkpoint)
    if args.select:
        result |= score_select(
            run, args.seed, args.select, shape, args.workers, predict, tag, args.checkpoint
        )
    # wall time of the scoring here: predicting every cohort again with --predict, else only the selection
    # cohorts (the demo scored its own); so a prediction setting's cost (e.g. tta) is measured, not described
    result["scoring_seconds"] = round(time.perf_counter() - start, 1)
    path = write_result(f"generalise-{args.name}", result, load_before)
    print(path.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
