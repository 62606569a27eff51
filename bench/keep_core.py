"""Does the coreless-component rule cost small tumours? A fallback that keeps the most-cored component, scored on
the selection cohorts.

    python bench/keep_core.py --name v20-n4 --run /tmp/gx/v20-n4 --select-root runs/select-0-32
    python bench/keep_core.py --table v20-n4 v20-n4-s1

With ``core_min_ml`` 0.2 a tumour component is kept only if it holds 0.2 mL of predicted core (NCR + ET). A small
tumour whose core the model under-calls then vanishes, and the case scores 0. The ``keep-core`` row applies the
run's thresholds, then puts back the whole-tumour component with the most predicted core voxels when it holds
at least one (so a case keeps its most tumour-like component). It reads the raw predictions that
``postprocess_select.py`` caches (``RUN/bench_raw_*``; predicted once if missing), scores each row with the
objective of ``tune-postprocess`` (mean over cases of (WT + TC + ET Dice) / 3, BraTS empty rule) and writes
``bench/results/keep-core-<name>.json``. The test split and the stress cohort are not read. The rule is not a
toolkit option: it lost (docs/training.md, "Seventeenth round").
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from brats.config import load_config  # noqa: E402
from brats.evaluate import region_dice  # noqa: E402
from brats.predict.postprocess import ET, NCR, postprocess_ml, tumour_components  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from raw_predictions import cohort_root, load_raw, raw_label, selection_cli  # noqa: E402

COHORTS = ("val", "select", "select_stress")
ROWS = ("config", "keep-core")


def keep_most_cored(raw: np.ndarray, processed: np.ndarray) -> np.ndarray:
    """``processed`` with the whole-tumour component of ``raw`` that holds the most NCR + ET voxels put back
    (when it holds any)."""
    labels, sizes = tumour_components(raw)
    out = processed.copy()
    if len(sizes) < 2:
        return out
    core = np.bincount(labels.ravel(), weights=np.isin(raw, (NCR, ET)).ravel(), minlength=len(sizes))
    core[0] = 0
    best = int(np.argmax(core))
    if core[best] > 0:
        out[labels == best] = raw[labels == best]
    return out


def score(raw: np.ndarray, ref: np.ndarray, spacing: tuple, pp: dict, keep: bool) -> dict[str, float]:
    """Region Dice of one case under the thresholds ``pp`` (mL), with or without the fallback."""
    size, et, core = pp["min_component_ml"], pp["et_min_ml"], pp["core_min_ml"]
    components, _ = postprocess_ml(raw, spacing, size, 0.0, core)
    if keep:
        components = keep_most_cored(raw, components)
    return region_dice(postprocess_ml(components, spacing, 0.0, et, 0.0)[0], ref)


def measure(run: Path, select_root: Path) -> dict:
    pc = load_config(run / "config.yaml").predict.postprocess
    pp = {"min_component_ml": pc.min_component_ml, "et_min_ml": pc.et_min_ml, "core_min_ml": pc.core_min_ml}
    rows: dict[str, dict] = {r: {} for r in ROWS}
    for cohort in COHORTS:
        _, preds, refs, spacings = load_raw(
            run, cohort_root(run, select_root, cohort), raw_label(select_root, cohort)
        )
        for row in ROWS:
            dice = [score(p, r, s, pp, row == "keep-core") for p, r, s in zip(preds, refs, spacings)]
            means = {k: round(float(np.mean([d[k] for d in dice])), 4) for k in ("WT", "TC", "ET")}
            rows[row][cohort] = {**means, "objective": round(float(np.mean(list(means.values()))), 4)}
    for r in rows.values():
        r["selection_mean"] = round((r["select"]["objective"] + r["select_stress"]["objective"]) / 2, 4)
    return {"run": str(run), "select_root": str(select_root), "thresholds": pp, "rows": rows}


def table(records: dict[str, dict]) -> str:
    out = [
        "| model | row | val | select (WT) | select_stress (WT) | selection mean |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, rec in records.items():
        for row, r in rec["result"]["rows"].items():
            sel, st = r["select"], r["select_stress"]
            out.append(
                f"| {name} | {row} | {r['val']['objective']:.3f} | {sel['objective']:.3f} ({sel['WT']:.3f}) | "
                f"{st['objective']:.3f} ({st['WT']:.3f}) | {r['selection_mean']:.3f} |"
            )
    means = {
        row: np.mean([rec["result"]["rows"][row]["selection_mean"] for rec in records.values()])
        for row in ROWS
    }
    out.append("")
    out.append(
        f"mean selection mean over {len(records)}: " + ", ".join(f"{k} {v:.3f}" for k, v in means.items())
    )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    return selection_cli(argv, __doc__, "keep-core", measure, table)


if __name__ == "__main__":
    sys.exit(main())
