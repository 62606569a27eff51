"""Score cases with the official BraTS evaluation package.

Run with .venv-brats-eval's python (scripts/brats_eval_venv.sh), not the toolkit's:
``python tests/brats_eval_driver.py DIR``. ``DIR/cases.json`` lists case names; ``DIR/pred/NAME.nii.gz`` and
``DIR/ref/NAME.nii.gz`` are the label maps (0..3, ET = 3; voxel size from the NIfTI header, as the official
CLI reads it). Each case goes through ``brats_evaluation.evaluate_single_exam`` with the bundled ``gli``
config, then through the package's own CSV parser (``parse_seg_results``, behind ``brats-parse-metrics
seg``). The parsed columns are printed as one JSON object on the last stdout line, keyed like
``brats.evaluate.lesionwise`` (``{case: {"ET_lesion_dice": ..., ...}}``), NaN and infinity as JSON's NaN and
Infinity. Everything the package itself prints goes to stderr.
"""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path

# Official parser column (with the region suffix) -> our metric name.
COLUMNS = {
    "lesionwise_dsc_mean": "dice",
    "lesionwise_hd95_mean": "hd95",
    "all_instance_tp": "tp",
    "all_instance_fp": "fp",
    "all_instance_fn": "fn",
    "all_instance_prec": "precision",
    "all_instance_rec": "recall",
    "all_instance_f1": "f1",
}
REGIONS = {"ET": "et", "TC": "tc", "WT": "wt"}


def main(root: Path) -> dict[str, dict[str, float]]:
    import pandas as pd
    from brats_evaluation import config_path, evaluate_single_exam, parse_seg_results
    from panoptica import Panoptica_Evaluator

    names = json.loads((root / "cases.json").read_text())
    evaluator = Panoptica_Evaluator.load_from_config(str(config_path("gli")))
    summary = {"metrics": [], "missings": []}
    for name in names:
        result = evaluate_single_exam(
            prediction_filepath=str(root / "pred" / f"{name}.nii.gz"),
            reference_filepath=str(root / "ref" / f"{name}.nii.gz"),
            subject_identifier=name,
            evaluator=evaluator,
        )
        if "error" in result:
            raise RuntimeError(f"official evaluation failed on {name}: {result['error']}")
        summary["metrics"].append(result)
    (root / "summary.json").write_text(json.dumps(summary, indent=1))
    parse_seg_results(str(root / "summary.json"), str(root / "parsed.csv"))
    table = pd.read_csv(root / "parsed.csv", dtype={"subject_id": str}).set_index("subject_id")
    out: dict[str, dict[str, float]] = {}
    for name in names:
        row = table.loc[name]
        out[name] = {
            f"{region}_lesion_{ours}": float(row[f"{col}_{suffix}"])
            for region, suffix in REGIONS.items()
            for col, ours in COLUMNS.items()
        }
    return out


if __name__ == "__main__":
    with contextlib.redirect_stdout(sys.stderr):
        scores = main(Path(sys.argv[1]))
    print(json.dumps(scores))
