"""``brats demo``: the whole pipeline on a synthetic cohort, ending in ``OUTPUT_DIR/report.html``.

synthesise (brats.synth) -> extract (brats.patches) -> train within a time budget (brats.train) -> predict the
test split (brats.infer) -> evaluate (brats.metrics) -> report (brats.report).
"""

from __future__ import annotations

import json
import logging
import os
import platform
import time
from pathlib import Path

import nibabel as nib
import numpy as np

from brats import __version__
from brats.config import Config, load_config
from brats.io import atomic_write_text, discover_cases, load_case, load_seg
from brats.labels import to_classes

log = logging.getLogger(__name__)

__all__ = ["run_demo", "DEMO_CONFIG", "demo_config"]

DEMO_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "demo.yaml"
DEFAULT_CASES = 24
DEFAULT_MINUTES = 7.0
N_FIGURES = 3


def demo_config(
    output_dir: str | Path,
    shape: tuple[int, int, int] | None = None,
    minutes: float | None = None,
    max_steps: int | None = None,
    seed: int = 0,
) -> Config:
    """``configs/demo.yaml`` pointed at ``OUTPUT_DIR/cases``; small volumes get a patch size that fits them."""
    out = Path(output_dir)
    overrides = [f"output_dir={out}", f"data.root={out / 'cases'}", f"seed={seed}"]
    if minutes is not None:
        overrides.append(f"train.max_minutes={minutes}")
    if max_steps is not None:
        overrides += ["train.epochs=1", f"train.steps_per_epoch={max_steps}", "train.val_max_batches=2"]
    cfg = load_config(DEMO_CONFIG if DEMO_CONFIG.is_file() else None, overrides)
    if shape is not None:
        side = min(shape[0], shape[1])
        size = min(cfg.patches.size[0], max(32, side // 32 * 32))
        if size != cfg.patches.size[0]:
            cfg = load_config(
                DEMO_CONFIG if DEMO_CONFIG.is_file() else None,
                [*overrides, f"patches.size=[{size}, {size}]", f"patches.stride=[{size // 2}, {size // 2}]"],
            )
    return cfg


class _Clock:
    def __init__(self) -> None:
        self.t0 = time.perf_counter()
        self.stages: dict[str, float] = {}

    def lap(self, name: str, start: float) -> None:
        self.stages[name] = round(time.perf_counter() - start, 1)
        log.info("%s: %.1f s", name, self.stages[name])

    @property
    def total(self) -> float:
        return round(time.perf_counter() - self.t0, 1)


def _link_cases(case_dirs: list[Path], folder: Path) -> Path:
    """A folder of symbolic links to the given case folders (so evaluation sees only the test split)."""
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.iterdir():
        if old.is_symlink():
            old.unlink()
    for d in case_dirs:
        link = folder / d.name
        os.symlink(os.path.relpath(d.resolve(), folder.resolve()), link)
    return folder


def run_demo(
    output_dir: str | Path = "runs/demo",
    n_cases: int | None = None,
    minutes: float | None = None,
    seed: int = 0,
    shape: tuple[int, int, int] | None = None,
    max_steps: int | None = None,
    workers: int | None = None,
    progress: bool = True,
) -> dict:
    """Run the demo and return a dict of its artefacts and figures (also printed)."""
    from brats.infer import run_predict
    from brats.metrics import report_rows, run_evaluate
    from brats.patches import run_extract
    from brats.report import overlay_figure, read_cases_csv, write_report
    from brats.synth import generate_cohort
    from brats.train import run_training

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    n_cases = DEFAULT_CASES if n_cases is None else n_cases
    minutes = DEFAULT_MINUTES if minutes is None and max_steps is None else minutes
    workers = workers if workers is not None else min(2, os.cpu_count() or 1)
    cfg = demo_config(out, shape, minutes, max_steps, seed)
    clock = _Clock()
    say = print if progress else log.info

    say(f"[1/6] synthesising {n_cases} cases -> {cfg.data.root}")
    t = time.perf_counter()
    generate_cohort(
        cfg.data.root,
        n_cases=n_cases,
        seed=seed,
        naming="2021",
        workers=workers,
        shape=shape,
        progress=progress,
    )
    clock.lap("synthesise", t)

    say(f"[2/6] extracting patches -> {out / 'patches'}")
    t = time.perf_counter()
    run_extract(cfg, workers=workers, progress=progress)
    clock.lap("extract", t)

    say(
        f"[3/6] training {cfg.model.arch}/{cfg.model.encoder} (budget {minutes} min) -> {out / 'checkpoints'}"
    )
    t = time.perf_counter()
    run_training(cfg, resume=False, progress=progress)
    clock.lap("train", t)

    splits = json.loads((out / "splits.json").read_text())
    all_cases = {c.case_id: c for c in discover_cases(cfg.data.root)}
    test_ids = list(splits["test"]) or list(splits["val"])
    test_dirs = [all_cases[i].folder for i in test_ids]
    test_root = _link_cases(test_dirs, out / "test_cases")
    checkpoint = out / "checkpoints" / "best.pt"

    say(f"[4/6] predicting {len(test_ids)} test cases -> {out / 'predictions'}")
    t = time.perf_counter()
    run_predict(
        checkpoint=checkpoint, input_path=test_root, output_dir=out / "predictions", progress=progress
    )
    clock.lap("predict", t)

    say(f"[5/6] evaluating -> {out / 'evaluation'}")
    t = time.perf_counter()
    summary = run_evaluate(
        pred_dir=out / "predictions", ref_root=test_root, out_dir=out / "evaluation", progress=progress
    )
    clock.lap("evaluate", t)

    say(f"[6/6] writing the report -> {out / 'report.html'}")
    t = time.perf_counter()
    figures_dir = out / "figures"
    figures_dir.mkdir(exist_ok=True)
    refs = {}
    for cid in test_ids:
        case = all_cases[cid]
        refs[cid] = to_classes(load_seg(case), case.label_scheme)
    chosen = sorted(test_ids, key=lambda cid: (-int((refs[cid] > 0).sum()), cid))[:N_FIGURES]
    figures = []
    for cid in chosen:
        case = all_cases[cid]
        img, _ = load_case(case, ["flair", "t1ce"])
        pred = to_classes(
            np.asarray(nib.load(out / "predictions" / f"{cid}.nii.gz").dataobj), case.label_scheme
        )
        png = overlay_figure(img[0], img[1], refs[cid], pred, figures_dir / f"{cid}.png", title=cid)
        figures.append((cid, png))
    summary_rows, pooled_rows = report_rows(summary)
    case_rows = read_cases_csv(out / "evaluation" / "cases.csv")
    clock.lap("report", t)
    example = chosen[0] if chosen else (test_ids[0] if test_ids else None)
    itk = ""
    if example:
        flair = all_cases[example].images["flair"]
        itk = f"itksnap -g {flair} -s {out / 'predictions' / (example + '.nii.gz')}"
    facts = [
        ("command", f"<code>brats demo --output-dir {out}</code>"),
        (
            "cases",
            f"{n_cases} synthetic ({len(splits['train'])} train, {len(splits['val'])} val, "
            f"{len(splits['test'])} test)",
        ),
        (
            "model",
            f"{cfg.model.arch} / {cfg.model.encoder}, {len(cfg.data.modalities)} channels "
            f"({', '.join(cfg.data.modalities)}), patches {cfg.patches.size}",
        ),
        (
            "time per stage (s)",
            ", ".join(f"{k} {v}" for k, v in clock.stages.items()) + f"; total {clock.total}",
        ),
        ("machine", f"{platform.machine()}, {os.cpu_count()} CPU cores, {platform.system()}"),
        ("toolkit", f"brats {__version__}"),
    ]
    notes = (
        f"<p>Predictions: <code>{out / 'predictions'}</code>; scores: <code>{out / 'evaluation' / 'cases.csv'}</code>"
        f" and <code>summary.json</code>; checkpoint: <code>{checkpoint}</code>; resolved config: "
        f"<code>{out / 'config.yaml'}</code>.</p>"
        f"<p>Open a prediction over its scan in ITK-SNAP:</p><pre>{itk}</pre>"
    )
    report = write_report(
        out / "report.html",
        title="brats demo report",
        summary_rows=summary_rows,
        pooled_rows=pooled_rows,
        case_rows=case_rows,
        curves_png=out / "curves.png",
        figures=figures,
        facts=facts,
        notes=notes,
    )
    result = {
        "report": str(report),
        "predictions": str(out / "predictions"),
        "evaluation": str(out / "evaluation"),
        "checkpoint": str(checkpoint),
        "seconds": clock.stages | {"total": clock.total},
        "test_dice": {r["name"]: r.get("dice") for r in summary_rows},
    }
    atomic_write_text(out / "demo.json", json.dumps(result, indent=2))
    if progress:
        print()
        print(f"report:       {report}   (open it in a browser)")
        print(f"predictions:  {out / 'predictions'}")
        print(f"scores:       {out / 'evaluation' / 'cases.csv'}, {out / 'evaluation' / 'summary.json'}")
        print(f"checkpoint:   {checkpoint}")
        dice = ", ".join(f"{r['name']} {r['dice']:.3f}" for r in summary_rows if r.get("dice") is not None)
        print(f"test Dice:    {dice}")
        print(f"total time:   {clock.total / 60:.1f} min")
        if itk:
            print(f"view in ITK-SNAP:  {itk}")
    return result
