"""Which stress factor costs a trained model its Dice: score one run on stress cohorts that differ from the train
profile in one group of settings each.

    python bench/stress_factors.py --run runs/generalise-after --name after     # score, write the JSON
    python bench/stress_factors.py --table after                                 # Markdown table of a result

The ``select_stress`` cohort of ``bench/generalise.py --select 8`` draws every setting from the stress profile,
and every model so far loses most of its Dice there (WT about 0.1-0.2 against 0.7 in domain) without saying why.
Here each cohort is the train profile with one group of settings (:data:`GROUPS`) taken from the stress profile,
``none`` is the train profile itself and ``all`` the stress profile, all with the seed and case count of
``select_stress`` (seed 3000, 8 cases by default: ``all`` is that very cohort). Each case starts from the same
random stream in every cohort, but a changed setting can change the draws that follow (another tumour size takes
another branch), so cohorts share their anatomy and acquisition draws only in part; read a group's row as the
cost of that group plus case-to-case noise, over 8 cases. The cohorts are generated once under ``runs/factors-<seed>-<N>/<group>/`` (``brats synth --profile train
--set KEY=LOW,HIGH ...`` makes the same files) and reused; each run's predictions go to
``<run>/bench_factor_<group>``.

A diagnostic, not a selection cohort: it says which phenomenon to look at next; recipes are still chosen on the
selection mean of ``bench/generalise.py``. Prints one JSON object (also ``bench/results/stress-factors-<name>.json``):
per group the settings changed, mean Dice of WT/TC/ET, lesion-wise F1, pooled WT precision and recall and where the
reference edema went (``confusion``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from cached_cohort import cached_cohort  # noqa: E402
from generalise import cohort_scores  # noqa: E402
from results_io import RESULTS, load_now, read_result, write_result  # noqa: E402

from brats.synth import get_profile  # noqa: E402
from brats.synth.profile import with_settings  # noqa: E402

#: Settings that move together; each group's stress values replace the train ones in one cohort.
GROUPS: dict[str, tuple[str, ...]] = {
    "none": (),
    "lesions": (
        "no_tumour_per_20",
        "non_enhancing_per_20",
        "wt_radius_mm",
        "core_ratio",
        "p_second",
        "second_radius_mm",
        "edema_wm_follow",
    ),
    # the hyperintensities' contrast too: it was drawn from the edema ranges until they got their own settings,
    # so the row stays what it measured (faint edema, and look-alikes as faint); and the faint-edema mixture
    # (off in both profiles, so the row's cases are what they were before it existed)
    "edema": (
        "edema_flair",
        "edema_t2",
        "faint_edema_share",
        "faint_edema_flair",
        "faint_edema_t2",
        "wmh_flair",
        "wmh_t2",
    ),
    "enhancement": ("et_t1ce",),
    "wmh": ("wmh_count", "wmh_radius_mm"),
    "vessels": ("vessel_density", "vessel_radius_mm"),
    "scale": ("tissue_jitter", "gamma"),
    "bias": ("bias_std",),
    "noise": ("noise",),
    "slices": ("p_thick", "slice_mm"),
    "all": (),
}


def _text(value: object) -> str:
    return ",".join(str(v) for v in value) if isinstance(value, tuple) else str(value)


def group_settings(group: str) -> dict[str, str]:
    """``{setting: stress value as --set text}`` of one group (empty for ``none`` and ``all``)."""
    stress = get_profile("stress")
    return {key: _text(getattr(stress, key)) for key in GROUPS[group]}


def group_profile(group: str):
    """The profile of one group's cohort: the stress profile for ``all``, else train with the group's settings."""
    return get_profile("stress") if group == "all" else with_settings("train", group_settings(group))


def cohort(group: str, seed: int, n: int, workers: int) -> Path:
    """The cases of one group's cohort, generated once (a ``done`` file marks a complete cohort)."""
    return cached_cohort(Path("runs") / f"factors-{seed}-{n}" / group, n, seed, group_profile(group), workers)


def summary_row(scored: dict) -> dict:
    """The figures kept per group: Dice, lesion F1, pooled WT precision/recall, edema's confusion row."""
    full = cohort_scores(scored)
    keep = {k: full.get(k) for k in ("WT", "TC", "ET", "lesion_WT_f1", "cases")}
    keep["WT_precision_recall"] = full["pooled"].get("WT")
    conf = full.get("confusion") or {}
    keep["ED_to"] = conf.get("ED")
    return keep


def table(result: dict) -> str:
    """Markdown table of one result: a row per group."""
    lines = [
        "| cohort | settings from stress | WT / TC / ET | lesion WT F1 | WT precision / recall | edema called background |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for group, row in result["groups"].items():
        what = "every setting" if group == "all" else ", ".join(row["settings"]) or "none (train profile)"
        dice = " / ".join("-" if row[k] is None else f"{row[k]:.3f}" for k in ("WT", "TC", "ET"))
        pr = row["WT_precision_recall"] or {}
        prec = " / ".join("-" if pr.get(k) is None else f"{pr[k]:.3f}" for k in ("precision", "recall"))
        f1 = "-" if row["lesion_WT_f1"] is None else f"{row['lesion_WT_f1']:.3f}"
        ed = "-" if not row["ED_to"] else f"{row['ED_to']['background']:.1%}"
        lines.append(f"| {group} | {what} | {dice} | {f1} | {prec} | {ed} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, help="a demo or bench/generalise.py run folder (checkpoints/best.pt)")
    ap.add_argument("--name", help="result name: bench/results/stress-factors-<name>.json")
    ap.add_argument("--table", metavar="NAME", help="print the Markdown table of a saved result; run nothing")
    ap.add_argument("--cases", type=int, default=8, help="cases per cohort (default 8, as select_stress)")
    ap.add_argument("--seed", type=int, default=3000, help="cohort seed (default 3000, as select_stress)")
    ap.add_argument("--workers", type=int, default=2, help="synthesis worker processes")
    ap.add_argument("--groups", nargs="+", choices=list(GROUPS), default=list(GROUPS), help="default: all")
    args = ap.parse_args(argv)
    if args.table:
        record = read_result(f"stress-factors-{args.table}")
        if record is None:
            ap.error(f"no result bench/results/stress-factors-{args.table}.json")
        print(table(record["result"]))
        return 0
    if args.run is None or args.name is None:
        ap.error("--run and --name are required unless --table is given")
    ckpt = args.run / "checkpoints" / "best.pt"
    if not ckpt.is_file():
        ap.error(f"{ckpt}: no such checkpoint")
    from brats.demo import score_cohort  # torch: not for --table (docs/training.md runs ten of those)

    before = load_now()
    start = time.perf_counter()
    groups: dict[str, dict] = {}
    for group in args.groups:
        root = cohort(group, args.seed, args.cases, args.workers)
        scored = score_cohort(ckpt, root, args.run / f"bench_factor_{group}")
        groups[group] = {"settings": group_settings(group), **summary_row(scored)}
        print(
            f"{group}: WT {groups[group]['WT']} TC {groups[group]['TC']} ET {groups[group]['ET']}", flush=True
        )
    payload = {
        "run": str(args.run),
        "seed": args.seed,
        "cases": args.cases,
        "groups": groups,
        "seconds": round(time.perf_counter() - start, 1),
    }
    path = write_result(f"stress-factors-{args.name}", payload, load_before=before, folder=RESULTS)
    print(json.dumps(payload, indent=1))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
