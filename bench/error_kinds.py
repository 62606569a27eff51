"""Where a run's whole-tumour errors lie: false lesions, missed lesions, or the edges of the lesions it found.

    python bench/error_kinds.py --name b39r --run /tmp/gx/b39r --select-root runs/select-0-32
    python bench/error_kinds.py --table b39r b39-s1       # saved results; run nothing
    python bench/error_kinds.py --yardstick DIR           # the yardstick alone, on the references under DIR

Reads the predictions that ``bench/generalise.py --select`` wrote for the two selection cohorts (post-processed,
the files it scored; ``RUN/bench_<cohort>/predictions``) and the cohorts' references, and sorts every wrong
whole-tumour voxel (WT: any label > 0) of every case into one kind:

* ``false lesion``: a false positive in a predicted component (26-connected) that touches no reference voxel;
* ``edge``: any other false positive within ``EDGE_MM`` (2 mm) of the reference, or a false negative within 2 mm
  of the prediction, whichever side it is on;
* ``missed lesion``: a false negative in a reference component (26-connected) that no predicted voxel touches;
* ``far``: the rest, false positives more than 2 mm outside a found lesion and false negatives more than 2 mm
  inside one (a missed part of a found tumour, such as a stretch of faint edema).

For each cohort and size bin of the reference (those of ``size_bins.py``) the table prints the mean WT Dice, and
the mean it would be with one kind of error put right and the others left (a false positive removed; a false
negative counted as found). The empty rules are BraTS's: a tumour-free case scores 1 when nothing is predicted
and 0 otherwise. The last column is a yardstick, not a model: the mean Dice of the reference against itself
grown by one voxel (6-connected), what a segmentation that is one voxel too large everywhere would score. The
test split and the stress cohort are not read. ``--yardstick DIR`` prints the yardstick alone for the cases under
DIR, from their references (no prediction is read), so it can be quoted for a test split as well.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

sys.path.insert(0, str(Path(__file__).resolve().parent))
from raw_predictions import selection_cli  # noqa: E402
from size_bins import BINS, COHORTS, bin_label  # noqa: E402

from brats.errors import BratsError  # noqa: E402
from brats.evaluate.metrics import dice_from_counts  # noqa: E402

EDGE_MM = 2.0
KINDS = ("false lesion", "edge", "missed lesion", "far")
_FULL = np.ones((3, 3, 3), bool)


def _dice(tp: float, fp: float, fn: float) -> float:
    """WT Dice with BraTS's empty rule (no reference and no prediction: 1), as the evaluation computes it."""
    return dice_from_counts(tp, fp, fn, "brats")


def error_kinds(pred: np.ndarray, ref: np.ndarray, spacing=(1.0, 1.0, 1.0)) -> dict:
    """One case's voxel counts: ``tp``, ``fp``, ``fn``, and each kind's false positives and false negatives
    (``"<kind> fp"``, ``"<kind> fn"``; a false lesion is only ever a false positive, a missed lesion a false
    negative).

    Example (a 3-voxel lesion found as 4 voxels, a false 1-voxel lesion, a missed 1-voxel lesion):
        >>> ref = np.zeros((12, 1, 1), bool); ref[1:4] = True; ref[10] = True
        >>> pred = np.zeros((12, 1, 1), bool); pred[1:5] = True; pred[7] = True
        >>> {k: v for k, v in error_kinds(pred, ref).items() if v}
        {'tp': 3, 'fp': 2, 'fn': 1, 'false lesion fp': 1, 'edge fp': 1, 'missed lesion fn': 1}
    """
    pred, ref = np.asarray(pred, bool), np.asarray(ref, bool)
    fp, fn = pred & ~ref, ref & ~pred
    counts = {"tp": int((pred & ref).sum()), "fp": int(fp.sum()), "fn": int(fn.sum())}
    counts.update({f"{kind} {side}": 0 for kind in KINDS for side in ("fp", "fn")})
    for side, wrong, own, other, alone in (
        ("fp", fp, pred, ref, "false lesion"),
        ("fn", fn, ref, pred, "missed lesion"),
    ):
        if not wrong.any():
            continue
        # a component of this side's mask that shares no voxel with the other side's is wholly wrong
        lab, _ = ndi.label(own, _FULL)
        lone = wrong & ~np.isin(lab, np.unique(lab[pred & ref]))
        counts[f"{alone} {side}"] = int(lone.sum())
        rest = wrong & ~lone
        if rest.any():
            near = ndi.distance_transform_edt(~other, sampling=spacing)[rest] <= EDGE_MM
            counts[f"edge {side}"] = int(near.sum())
            counts[f"far {side}"] = int((~near).sum())
    return counts


def corrected_dice(counts: dict, kind: str | None = None) -> float:
    """The case's WT Dice (:func:`error_kinds` counts) with the errors of ``kind`` put right (None: as
    predicted): its false positives removed, its false negatives counted as found.

    Example:
        >>> c = {"tp": 3, "fp": 2, "fn": 1, "edge fp": 1, "edge fn": 0}
        >>> round(corrected_dice(c), 4), round(corrected_dice(c, "edge"), 4)
        (0.6667, 0.75)
    """
    tp, fp, fn = counts["tp"], counts["fp"], counts["fn"]
    if kind is not None:
        kfp, kfn = counts[f"{kind} fp"], counts[f"{kind} fn"]
        tp, fp, fn = tp + kfn, fp - kfp, fn - kfn
    return _dice(tp, fp, fn)


def grown_dice(ref: np.ndarray) -> float:
    """The yardstick: Dice of ``ref`` against itself grown by one voxel (6-connected); 1 for an empty ``ref``.

    Example (a 3 x 3 x 3 cube grows to 27 + 6 x 9 voxels):
        >>> ref = np.zeros((7, 7, 7), bool); ref[2:5, 2:5, 2:5] = True
        >>> round(grown_dice(ref), 4), 2 * 27 / (27 + 27 + 54)
        (0.5, 0.5)
    """
    ref = np.asarray(ref, bool)
    if not ref.any():
        return 1.0
    grown = ndi.binary_dilation(ref, ndi.generate_binary_structure(3, 1))
    return _dice(float(ref.sum()), float((grown & ~ref).sum()), 0.0)


def _ml(mask: np.ndarray, spacing) -> float:
    """The volume of ``mask`` in mL on a grid of ``spacing`` mm."""
    return float(mask.sum()) * float(np.prod([float(v) for v in spacing])) / 1000.0


def cohort_cases(run: Path, root: Path, cohort: str) -> dict[str, dict]:
    """Per case of ``root``: its reference WT volume, size bin, :func:`error_kinds` counts and the yardstick.

    Raises:
        FileNotFoundError: a case without a prediction in ``RUN/bench_<cohort>/predictions``, or with one older
            than the run's ``checkpoints/best.pt`` (one line, naming it).
    """
    from brats.data import discover_cases, load_seg
    from brats.data.nifti import load_geometry, load_label_file
    from brats.labels import get_scheme

    scheme = get_scheme("brats2021")
    folder = run / f"bench_{cohort}" / "predictions"
    ckpt = run / "checkpoints" / "best.pt"
    trained = ckpt.stat().st_mtime if ckpt.is_file() else 0.0
    out: dict[str, dict] = {}
    for case in discover_cases(root):
        path = folder / f"{case.case_id}.nii.gz"
        if not path.is_file() or path.stat().st_mtime < trained:
            why = "no prediction" if not path.is_file() else f"older than {ckpt}"
            raise FileNotFoundError(f"{path}: {why} (score the run with bench/generalise.py --select first)")
        pred = load_label_file(path, scheme, True) > 0
        ref = load_seg(case) > 0
        spacing = tuple(float(z) for z in load_geometry(path).spacing)
        ml = _ml(ref, spacing)
        out[case.case_id] = {
            "WT_ml": round(ml, 4),
            "bin": bin_label(ml),
            "counts": error_kinds(pred, ref, spacing),
            "grown": round(grown_dice(ref), 6),
        }
    return out


def summarise(per_case: dict[str, dict]) -> dict:
    """Per size bin (and ``all``): cases, mean WT Dice as predicted, with each kind put right, and the
    yardstick; and each kind's share of the cohort's wrong voxels (pooled over cases)."""
    bins: dict[str, dict] = {}
    for label in [b[0] for b in BINS] + ["all"]:
        cases = [c for c in per_case.values() if label in ("all", c["bin"])]
        if not cases:
            continue
        row = {"cases": len(cases), "WT": float(np.mean([corrected_dice(c["counts"]) for c in cases]))}
        for kind in KINDS:
            row[kind] = float(np.mean([corrected_dice(c["counts"], kind) for c in cases]))
        row["grown"] = float(np.mean([c["grown"] for c in cases]))
        bins[label] = row
    wrong = sum(c["counts"]["fp"] + c["counts"]["fn"] for c in per_case.values())
    share = {
        kind: (sum(c["counts"][f"{kind} fp"] + c["counts"][f"{kind} fn"] for c in per_case.values()) / wrong)
        if wrong
        else 0.0
        for kind in KINDS
    }
    sides = {
        f"{kind}_{side}": sum(c["counts"][f"{kind} {side}"] for c in per_case.values())
        for kind in ("edge", "far")
        for side in ("fp", "fn")
    }
    return {"bins": bins, "share": share, "wrong_voxels": int(wrong), **sides}


def measure(run: Path, select_root: Path) -> dict:
    """Every case of the two selection cohorts, and their summary."""
    per_case = {cohort: cohort_cases(run, select_root / cohort, cohort) for cohort in COHORTS}
    return {
        "run": str(run),
        "select_root": str(select_root),
        "edge_mm": EDGE_MM,
        "summary": {cohort: summarise(cases) for cohort, cases in per_case.items()},
        "per_case": per_case,
    }


def table(records: dict[str, dict]) -> str:
    """Two Markdown tables: mean WT Dice by size bin as predicted and with each kind put right; each kind's
    share of the wrong voxels, and the edge's and far voxels outside the reference (false positives) and inside it
    (false negatives)."""
    head = "| result | cohort | reference | cases | WT | " + " | ".join(f"no {k}" for k in KINDS)
    lines = [head + " | grown 1 voxel |", "| --- | --- | --- | --- |" + " --- |" * (len(KINDS) + 2)]
    for name, rec in records.items():
        for cohort, s in rec["result"]["summary"].items():
            for label, row in s["bins"].items():
                cells = " | ".join(f"{row[k]:.3f}" for k in ("WT", *KINDS, "grown"))
                lines.append(f"| {name} | {cohort} | {label} | {row['cases']} | {cells} |")
    head = "| result | cohort | wrong voxels | " + " | ".join(KINDS)
    lines += ["", head + " | edge outside / inside | far outside / inside |"]
    lines.append("| --- | --- | --- |" + " --- |" * (len(KINDS) + 2))
    for name, rec in records.items():
        for cohort, s in rec["result"]["summary"].items():
            cells = " | ".join(f"{100 * s['share'][k]:.1f}%" for k in KINDS)
            sides = " | ".join(f"{s[f'{k}_fp']} / {s[f'{k}_fn']}" for k in ("edge", "far"))
            lines.append(f"| {name} | {cohort} | {s['wrong_voxels']} | {cells} | {sides} |")
    return "\n".join(lines)


def yardstick(root: Path) -> str:
    """Each case's reference WT volume and :func:`grown_dice` under ``root``, and their mean: the references
    alone, no prediction (``--yardstick ROOT``, for a test split whose predictions are not to be read)."""
    from brats.data import discover_cases, load_seg
    from brats.data.nifti import load_geometry

    rows, values = [], []
    for case in discover_cases(root):
        ref = load_seg(case) > 0
        ml = _ml(ref, load_geometry(case.seg).spacing)
        values.append(grown_dice(ref))
        rows.append(f"{case.case_id}: WT {ml:.1f} mL, grown 1 voxel {values[-1]:.3f}")
    return "\n".join([*rows, f"mean over {len(values)} cases: {np.mean(values):.3f}"])


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    try:
        if args[:1] == ["--yardstick"] and len(args) == 2:
            print(yardstick(Path(args[1])))
            return 0
        return selection_cli(argv, __doc__, "errors", measure, table)
    except (FileNotFoundError, BratsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
