"""Raw predictions of a trained run on one cohort (no post-processing), predicted once and reused.

``bench/postprocess_select.py`` (threshold sweeps), ``bench/components.py`` (what the component rules remove) and
``bench/keep_core.py`` (a fallback for small tumours) score a run's ``checkpoints/best.pt`` on cohorts without
post-processing. The predictions go to ``RUN/bench_raw_<label>/`` with a ``done`` file listing the case ids
predicted; a folder whose list differs from the cohort's cases (a larger selection cohort, another cohort under the
same label) is predicted again, so a cache is never read for the wrong cases. :func:`selection_cli` is the command
line of the last two.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from brats.data import discover_cases, load_seg  # noqa: E402
from brats.data.nifti import load_geometry, load_label_file  # noqa: E402
from brats.labels import get_scheme, to_classes  # noqa: E402
from brats.predict import run_predict  # noqa: E402


def cohort_root(run: Path, select_root: Path, cohort: str) -> Path:
    """Where a cohort's cases are: the run's validation cases (``val``) or ``select_root/<cohort>``."""
    return run / "bench_val_cases" if cohort == "val" else select_root / cohort


def raw_label(select_root: Path, cohort: str) -> str:
    """The cache folder's label: ``val``, or ``<cohort>-<select_root's name>`` (selection cohorts of different
    sizes are different case sets)."""
    return "val" if cohort == "val" else f"{cohort}-{select_root.name}"


def load_raw(
    run: Path, root: Path, label: str
) -> tuple[list[str], list[np.ndarray], list[np.ndarray], list[tuple[float, ...]]]:
    """``(case ids, raw predictions, references, spacings)`` of the cases under ``root`` (training classes 0-3),
    predicting them without post-processing into ``run/bench_raw_<label>`` unless that folder's ``done`` lists
    exactly these cases."""
    cases = discover_cases(root)
    ids = [c.case_id for c in cases]
    out = run / f"bench_raw_{label}"
    done = out / "done"
    if not done.is_file() or done.read_text().split() != ids:
        run_predict(run / "checkpoints" / "best.pt", root, out, postprocess=False)
        done.write_text("\n".join(ids) + "\n")
    scheme = get_scheme("brats2021")
    preds, refs, spacings = [], [], []
    for case in cases:
        path = out / f"{case.case_id}.nii.gz"
        preds.append(to_classes(load_label_file(path, scheme, True), scheme, where=str(path)))
        refs.append(to_classes(load_seg(case), case.label_scheme, where=str(case.seg)))
        spacings.append(load_geometry(path).spacing)
    return ids, preds, refs, spacings


def selection_cli(
    argv: list[str] | None,
    doc: str | None,
    prefix: str,
    measure: Callable[[Path, Path], dict],
    table: Callable[[dict[str, dict]], str],
) -> int:
    """``--name N --run RUN --select-root ROOT``: ``measure(RUN, ROOT)``, saved as ``bench/results/<prefix>-N.json``
    and printed with ``table``; ``--table N...``: print saved results, run nothing. Returns the exit status."""
    from results_io import load_now, read_results, write_result

    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--name", help=f"result name: bench/results/{prefix}-<name>.json")
    ap.add_argument("--run", type=Path, help="a bench/generalise.py --select run folder")
    ap.add_argument("--select-root", type=Path, help="its selection cohorts: runs/select-<seed>-<N>")
    ap.add_argument("--table", nargs="+", metavar="NAME", help="print saved results; run nothing")
    args = ap.parse_args(argv)
    if args.table:
        try:
            records = read_results(prefix, args.table)
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print(table(records))
        return 0
    if not (args.name and args.run and args.select_root):
        ap.error("--name, --run and --select-root are required (or --table)")
    before = load_now()
    payload = measure(args.run, args.select_root)
    write_result(f"{prefix}-{args.name}", payload, before)
    print(table({args.name: {"result": payload}}))
    return 0
