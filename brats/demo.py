"""``brats demo``: the whole pipeline on a synthetic cohort, ending in ``OUTPUT_DIR/report.html``.

synthesise (brats.synth) -> extract (brats.extract) -> train within a time budget (brats.train) -> predict the
test split (brats.predict) -> evaluate (brats.evaluate) -> report (brats.report).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import platform
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from brats import __version__
from brats.checkpoint import config_input_channels
from brats.config import Config, load_config, shipped_config
from brats.data import Case, discover_cases, load_case, load_label_file, load_seg
from brats.demo_budget import TOTAL_MINUTES, TrainBudget, describe_budget, fit_run_budget
from brats.fs import atomic_write_text
from brats.labels import to_classes

if TYPE_CHECKING:
    from brats.synth import SynthProfile

log = logging.getLogger(__name__)

__all__ = ["run_demo", "DEMO_CONFIG", "DEMO_PROFILE_SETTINGS", "demo_config", "demo_profile"]

DEMO_CONFIG = "demo"  # brats/configs/demo.yaml, shipped with the package
DEFAULT_CASES = 36
DEFAULT_MINUTES = 8.5
N_FIGURES = 3
#: The stress cohort: ``brats synth --profile stress`` cases with their own seed (demo seed + STRESS_SEED_OFFSET),
#: never trained or selected on; scored once, beside the test split.
DEFAULT_STRESS_CASES = 8
STRESS_SEED_OFFSET = 1000
#: The demo cohort's synth profile: ``train`` with these settings. Twice its non-enhancing primary tumours (8 in
#: 20 cases instead of 4), so that the training split holds enough of them to learn that a core without an
#: enhancing rim is tumour: chosen on 32 + 32 selection cases over three seeds (docs/training.md, "Fourteenth
#: round"). The generator's ``train`` profile, and so ``brats synth`` and the selection cohorts, keep 4.
DEMO_PROFILE_SETTINGS = {"non_enhancing_per_20": "8"}


def demo_profile() -> SynthProfile:
    """The synth profile of the demo's own cohort: ``train`` with :data:`DEMO_PROFILE_SETTINGS`."""
    from brats.synth import with_settings

    return with_settings("train", DEMO_PROFILE_SETTINGS)


def demo_config(
    output_dir: str | Path,
    shape: tuple[int, int, int] | None = None,
    minutes: float | None = None,
    max_steps: int | None = None,
    seed: int = 0,
    extra: list[str] | None = None,
) -> Config:
    """The shipped ``configs/demo.yaml`` pointed at ``OUTPUT_DIR/cases``; small volumes get a patch size that fits them."""
    out = Path(output_dir)
    overrides = [f"output_dir={out}", f"data.root={out / 'cases'}", f"seed={seed}", *(extra or [])]
    if minutes is not None:
        overrides.append(f"train.max_minutes={minutes}")
    if max_steps is not None:
        overrides += ["train.epochs=1", f"train.steps_per_epoch={max_steps}", "train.val_max_batches=2"]
    cfg = load_config(shipped_config(DEMO_CONFIG), overrides)
    if shape is not None:
        side = min(shape[0], shape[1])
        size = min(cfg.patches.size[0], max(32, side // 32 * 32))
        if size != cfg.patches.size[0]:
            cfg = load_config(
                shipped_config(DEMO_CONFIG),
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


def lesion_summary(summary: dict[str, Any]) -> dict[str, float | int | None]:
    """Lesion-wise WT/TC/ET detection over a cohort: TP, FP, FN summed over its cases, and the F1 of the sums.

    Read from the ``lesionwise`` section ``brats evaluate`` already wrote (official rules; per-case values
    from :func:`brats.evaluate.lesionwise.lesion_metrics`), so nothing is re-read or recomputed. None where
    undefined (also for a summary written before lesion-wise metrics existed).
    """
    lesion = summary.get("lesionwise") or {}
    out: dict[str, float | int | None] = {}
    for r in ("WT", "TC", "ET"):
        counts = {k: (lesion.get(r) or {}).get(k, {}).get("sum") for k in ("tp", "fp", "fn")}
        out |= {f"{r}_{k}": None if v is None else int(v) for k, v in counts.items()}
    for r in ("WT", "TC", "ET"):
        tp, fp, fn = out[f"{r}_tp"], out[f"{r}_fp"], out[f"{r}_fn"]
        defined = tp is not None and fp is not None and fn is not None and tp + fp + fn > 0
        out[f"{r}_f1"] = round(2 * tp / (2 * tp + fp + fn), 4) if defined else None  # type: ignore[operator]
    return out


def score_cohort(checkpoint: Path, root: Path, out: Path, progress: bool = False, **predict: Any) -> dict:
    """Predict every case under ``root`` into ``out/predictions`` (``predict``: keyword settings of
    :func:`brats.predict.run_predict`, e.g. ``windows="patch"``), evaluate into ``out/evaluation``; return
    ``{"summary": run_evaluate's summary, "lesion": lesion_summary}``."""
    from brats.evaluate import run_evaluate
    from brats.predict import run_predict

    run_predict(
        checkpoint=checkpoint, input_path=root, output_dir=out / "predictions", progress=progress, **predict
    )
    summary = run_evaluate(
        pred_dir=out / "predictions", ref_root=root, out_dir=out / "evaluation", progress=progress
    )
    return {"summary": summary, "lesion": lesion_summary(summary)}


def _figures(out: Path, test_ids: list[str], all_cases: dict[str, Case]) -> list[tuple[str, Path]]:
    """Overlay figures (FLAIR and T1ce, reference and prediction) of the test cases with the most tumour."""
    from brats.report import overlay_figure

    figures_dir = out / "figures"
    figures_dir.mkdir(exist_ok=True)
    refs = {cid: to_classes(load_seg(all_cases[cid]), all_cases[cid].label_scheme) for cid in test_ids}
    chosen = sorted(test_ids, key=lambda cid: (-int((refs[cid] > 0).sum()), cid))[:N_FIGURES]
    figures = []
    for cid in chosen:
        case = all_cases[cid]
        img, _ = load_case(case, ["flair", "t1ce"])
        pred = to_classes(load_label_file(out / "predictions" / f"{cid}.nii.gz"), case.label_scheme)
        png = overlay_figure(img[0], img[1], refs[cid], pred, figures_dir / f"{cid}.png", title=cid)
        figures.append((cid, png))
    return figures


def _facts(
    cfg: Config, out: Path, n_cases: int, splits: dict, clock: _Clock, budget: TrainBudget | None = None
) -> list[tuple[str, str]]:
    from brats.checkpoint import read_checkpoint

    pp = read_checkpoint(out / "checkpoints" / "best.pt").postprocess
    where = "chosen on the validation split" if pp.get("source") == "validation" else "from the config"
    return [
        ("command", f"<code>brats demo --output-dir {out}</code>"),
        (
            "cases",
            f"{n_cases} synthetic ({len(splits['train'])} train, {len(splits['val'])} val, "
            f"{len(splits['test'])} test)",
        ),
        (
            "model",
            f"{cfg.model.arch} / {cfg.model.encoder}, "
            f"{config_input_channels(cfg)} channels "
            f"({', '.join(cfg.data.modalities)}{' and their asymmetries' if cfg.preprocess.asymmetry else ''}), "
            f"patches {cfg.patches.size}",
        ),
        ("training budget", describe_budget(cfg.train.max_minutes, budget)),
        (
            "post-processing",
            f"min_component_ml {pp['min_component_ml']:g}, et_min_ml {pp['et_min_ml']:g}, "
            f"core_min_ml {pp.get('core_min_ml', 0.0):g}, fragment_ml {pp.get('fragment_ml', 0.0):g} ({where})",
        ),
        (
            "time per stage (s)",
            ", ".join(f"{k} {v}" for k, v in clock.stages.items()) + f"; total {clock.total}",
        ),
        ("machine", f"{platform.machine()}, {os.cpu_count()} CPU cores, {platform.system()}"),
        ("toolkit", f"brats {__version__}"),
    ]


def _write_report(
    cfg: Config,
    out: Path,
    n_cases: int,
    test_ids: list[str],
    all_cases: dict[str, Case],
    cohorts: dict[str, dict],
    clock: _Clock,
    budget: TrainBudget | None = None,
) -> tuple[Path, list[dict], str]:
    """``report.html``; returns its path, the summary rows and the ITK-SNAP command for one case."""
    from brats.evaluate import report_rows
    from brats.report import read_cases_csv, write_report

    t = time.perf_counter()
    splits = json.loads((out / "splits.json").read_text())
    figures = _figures(out, test_ids, all_cases)
    summary_rows, pooled_rows = report_rows(cohorts["test"]["summary"])
    side = {name: (report_rows(c["summary"])[0], c["lesion"]) for name, c in cohorts.items()}
    case_rows = read_cases_csv(out / "evaluation" / "cases.csv")
    clock.lap("report", t)
    example = figures[0][0] if figures else (test_ids[0] if test_ids else None)
    itk = ""
    if example:
        flair = all_cases[example].images["flair"]
        itk = f"itksnap -g {flair} -s {out / 'predictions' / (example + '.nii.gz')}"
    checkpoint = out / "checkpoints" / "best.pt"
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
        facts=_facts(cfg, out, n_cases, splits, clock, budget),
        notes=notes,
        cohorts=side,
    )
    return report, summary_rows, itk


def _build(
    cfg: Config,
    n_cases: int,
    seed: int,
    shape,
    workers: int,
    progress: bool,
    say,
    clock: _Clock,
    profile: str | SynthProfile = "train",
    fit_total: float | None = None,
    n_stress: int = 0,
) -> TrainBudget | None:
    """Stages 1-3: synthesise (``profile``: a synth profile name or a SynthProfile), extract, train; with
    ``fit_total`` (minutes), the training budget fitted to it (:mod:`brats.demo_budget`) is returned."""
    from brats.extract import run_extract
    from brats.synth import generate_cohort, get_profile
    from brats.train import run_training

    out = Path(cfg.output_dir)
    say(f"[1/6] synthesising {n_cases} cases (synth profile {get_profile(profile).name}) -> {cfg.data.root}")
    t = time.perf_counter()
    generate_cohort(
        cfg.data.root,
        n_cases=n_cases,
        seed=seed,
        naming="2021",
        workers=workers,
        shape=shape,
        progress=progress,
        profile=profile,
    )
    clock.lap("synthesise", t)
    say(f"[2/6] extracting patches -> {out / 'patches'}")
    t = time.perf_counter()
    run_extract(cfg, workers=workers, progress=progress)
    clock.lap("extract", t)
    elapsed = time.perf_counter() - clock.t0
    budget = fit_run_budget(cfg, n_cases, clock.stages, elapsed, n_stress, fit_total) if fit_total else None
    what = describe_budget(cfg.train.max_minutes, budget, short=True)
    say(f"[3/6] training {cfg.model.arch}/{cfg.model.encoder} ({what}) -> {out / 'checkpoints'}")
    t = time.perf_counter()
    run_training(cfg, resume=False, progress=progress)
    clock.lap("train", t)
    from brats.evaluate import tune_postprocess

    pp = cfg.predict.postprocess
    if not pp.tune:
        say(
            f"[3/6] post-processing from the config (predict.postprocess.tune: false): min_component_ml "
            f"{pp.min_component_ml:g}, et_min_ml {pp.et_min_ml:g}, core_min_ml {pp.core_min_ml:g}, fragment_ml "
            f"{pp.fragment_ml:g}"
        )
        return budget
    say("[3/6] choosing post-processing thresholds on the validation split (never on test cases)")
    t = time.perf_counter()
    tuned = tune_postprocess(out, out / "checkpoints" / "best.pt", progress=progress)
    say(
        f"      min_component_ml {tuned['min_component_ml']:g}, et_min_ml {tuned['et_min_ml']:g} "
        f"(validation mean Dice {tuned['score']:.3f}; off {tuned['score_off']:.3f}); "
        f"core_min_ml {tuned['core_min_ml']:g}, fragment_ml {tuned['fragment_ml']:g} (the config's)"
    )
    clock.lap("tune", t)
    return budget


def _stress(cfg: Config, n: int, seed: int, shape, workers: int, progress: bool, say, clock: _Clock) -> dict:
    """Synthesise the stress cohort (profile ``stress``, its own seed) and score the best checkpoint on it."""
    from brats.synth import generate_cohort

    out = Path(cfg.output_dir) / "stress"
    stress_seed = seed + STRESS_SEED_OFFSET
    say(f"[5/6] stress cohort: {n} cases (profile stress, seed {stress_seed}) -> {out}")
    t = time.perf_counter()
    generate_cohort(
        out / "cases", n, stress_seed, "2021", workers, shape, progress=progress, profile="stress"
    )
    result = score_cohort(Path(cfg.output_dir) / "checkpoints" / "best.pt", out / "cases", out, progress)
    clock.lap("stress", t)
    return result


def run_demo(
    output_dir: str | Path = "runs/demo",
    n_cases: int | None = None,
    minutes: float | None = None,
    seed: int = 0,
    shape: tuple[int, int, int] | None = None,
    max_steps: int | None = None,
    workers: int | None = None,
    progress: bool = False,
    stress_cases: int | None = None,
    overrides: list[str] | None = None,
    profile: str | SynthProfile | None = None,
) -> dict:
    """Run the demo and return a dict of its artefacts and figures (printed when ``progress``).

    ``stress_cases`` (default 8; 0 skips it) stress-profile cases are scored after the test split;
    ``overrides`` are extra ``key=value`` config settings and ``profile`` the synth profile of the demo's own
    cohort (default :func:`demo_profile`; ``bench/generalise.py`` sets both; the stress cohort keeps the stress
    profile).
    """
    from brats.evaluate import report_rows
    from brats.synth import get_profile

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    # the default budget is cut where needed to keep the demo within TOTAL_MINUTES; one the user gives is kept
    fit_total = TOTAL_MINUTES if minutes is None and max_steps is None else None
    n_cases = DEFAULT_CASES if n_cases is None else n_cases
    stress_cases = DEFAULT_STRESS_CASES if stress_cases is None else stress_cases
    minutes = DEFAULT_MINUTES if minutes is None and max_steps is None else minutes
    workers = workers if workers is not None else min(2, os.cpu_count() or 1)
    cfg = demo_config(out, shape, minutes, max_steps, seed, overrides)
    clock = _Clock()
    say = print if progress else log.info
    profile = demo_profile() if profile is None else profile
    budget = _build(
        cfg, n_cases, seed, shape, workers, progress, say, clock, profile, fit_total, stress_cases
    )

    splits = json.loads((out / "splits.json").read_text())
    all_cases = {c.case_id: c for c in discover_cases(cfg.data.root)}
    test_ids = list(splits["test"]) or list(splits["val"])
    test_root = _link_cases([all_cases[i].folder for i in test_ids], out / "test_cases")
    checkpoint = out / "checkpoints" / "best.pt"
    say(f"[4/6] predicting and evaluating {len(test_ids)} test cases -> {out / 'predictions'}")
    t = time.perf_counter()
    test = score_cohort(checkpoint, test_root, out, progress)
    clock.lap("test", t)
    stress = _stress(cfg, stress_cases, seed, shape, workers, progress, say, clock) if stress_cases else None
    say(f"[6/6] writing the report -> {out / 'report.html'}")
    cohorts = {"test": test} | ({"stress": stress} if stress else {})
    report, summary_rows, itk = _write_report(cfg, out, n_cases, test_ids, all_cases, cohorts, clock, budget)
    result: dict[str, Any] = {
        "report": str(report),
        "predictions": str(out / "predictions"),
        "evaluation": str(out / "evaluation"),
        "checkpoint": str(checkpoint),
        "synth_profile": dataclasses.asdict(get_profile(profile)),
        "seconds": clock.stages | {"total": clock.total},
        "train_budget": None if budget is None else budget.to_dict(),
    }
    for name, scored in cohorts.items():
        result[f"{name}_dice"] = {r["name"]: r.get("dice") for r in report_rows(scored["summary"])[0]}
        result[f"{name}_lesion"] = scored["lesion"]
        # what a mean of a few cases hides: how many, the middle case, how far the mean can move (its 95 % CI)
        wt = scored["summary"]["per_case"]["WT"]["dice"]
        result |= {f"{name}_cases": int(scored["summary"]["n_cases"]), f"{name}_wt_median": wt["median"]}
        result[f"{name}_wt_ci95"] = wt.get("ci95")
    atomic_write_text(out / "demo.json", json.dumps(result, indent=2))
    if progress:
        from brats.report import print_demo_result

        print_demo_result(result, itk, clock.total)
    return result
