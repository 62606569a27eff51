"""One ``cmd_*`` per ``brats`` sub-command: turn parsed arguments into one library call and print the result."""

from __future__ import annotations

import argparse
import json
import logging
import sys

from brats.errors import BratsError

log = logging.getLogger("brats")


def _load_cfg(args: argparse.Namespace):
    from brats.config import config_to_yaml, load_config

    cfg = load_config(args.config, args.overrides)
    if getattr(args, "print_config", False):
        sys.stdout.write(config_to_yaml(cfg))
        raise SystemExit(0)
    return cfg


def _parse_shard(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise BratsError(f"--shard expects I/N (e.g. 0/4), got {text!r}") from None
    if n < 1 or not 0 <= i < n:
        raise BratsError(f"--shard {text}: need 0 <= I < N")
    return i, n


# --------------------------------------------------------------------------------------------------------------
# Sub-commands
# --------------------------------------------------------------------------------------------------------------


def cmd_validate(args: argparse.Namespace) -> int:
    from brats.data import validate_cohort

    report = validate_cohort(
        args.root,
        naming=args.naming,
        pattern=args.pattern,
        read_data=not args.quick,
        progress=not args.json and not args.quiet,
    )
    if args.json:
        out = {k: report[k] for k in ("scheme", "cases", "problems")}
        print(json.dumps(out, indent=None))
    else:
        print(f"root:    {report['root']}")
        print(f"scheme:  {report['scheme']} naming")
        print(f"cases:   {len(report['cases'])} ({report['with_seg']} with a segmentation)")
        problems = report["problems"]
        if problems:
            print(f"problems: {len(problems)}")
            for p in problems:
                print(f"  {p['case']}: {p['file']}: {p['problem']}")
        else:
            print("problems: none")
    return 1 if report["problems"] else 0


def cmd_synth(args: argparse.Namespace) -> int:
    from brats.synth import SynthError, generate_cohort, with_settings

    shape = tuple(args.shape) if args.shape else None
    settings = {}
    for item in args.settings:
        key, sep, value = item.partition("=")
        if not sep:
            raise SynthError(f"--set {item!r}: expected KEY=VALUE, e.g. --set noise=0.06,0.09")
        settings[key.strip()] = value
    if args.naming == "kaggle_3m" and (settings or args.profile != "train"):
        raise SynthError(
            "--profile and --set apply to the BraTS namings; kaggle_3m cases use the train profile"
        )
    profile = with_settings(args.profile, settings)
    if args.naming == "kaggle_3m":  # LGG TIFF-slice layout (brats.synth.kaggle, docs/lgg.md)
        from brats.synth.kaggle import generate_kaggle_cohort

        paths = generate_kaggle_cohort(args.out_dir, args.cases, args.seed, shape, progress=True)
        print(f"wrote {len(paths)} patients to {args.out_dir}")
        return 0
    paths = generate_cohort(
        args.out_dir,
        n_cases=args.cases,
        seed=args.seed,
        naming=args.naming,
        workers=args.workers,
        shape=shape,
        progress=True,
        profile=profile,
    )
    print(f"wrote {len(paths)} cases ({profile.name} profile) to {args.out_dir}")
    return 0


def cmd_extract(args: argparse.Namespace) -> int:
    cfg = _load_cfg(args)
    from brats.extract import run_extract

    result = run_extract(cfg, workers=args.workers, progress=True)
    for key, value in result.items():
        print(f"{key}: {value}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    cfg = _load_cfg(args)
    from brats.train import run_training

    result = run_training(cfg, resume=args.resume, progress=True)
    for key, value in result.items():
        print(f"{key}: {value}")
    return 0


def _source_args(args: argparse.Namespace, source: str) -> None:
    """Exactly one of ``--<source>`` and ``--run`` with ``--split``."""
    given = getattr(args, source) is not None
    if given and (args.run is not None or args.split is not None):
        raise BratsError(f"give --{source} or --run RUN_DIR --split SPLIT, not both")
    if not given and (args.run is None or args.split is None):
        raise BratsError(f"give --{source} PATH, or --run RUN_DIR with --split train|val|test")
    if args.data_root is not None and args.run is None:
        raise BratsError("--data-root goes with --run")


def cmd_predict(args: argparse.Namespace) -> int:
    from pathlib import Path

    from brats.predict import run_predict

    _source_args(args, "input")
    checkpoint = args.checkpoint
    if checkpoint is None:
        if args.run is None:
            raise BratsError("give --checkpoint (or --run RUN_DIR to use RUN_DIR/checkpoints/best.pt)")
        checkpoint = Path(args.run) / "checkpoints" / "best.pt"
    paths = run_predict(
        checkpoint=checkpoint,
        input_path=args.input,
        output_dir=args.output,
        overlap=args.overlap,
        blend=args.blend,
        tta=args.tta,
        batch_size=args.batch_size,
        device=args.device,
        probabilities=args.probabilities,
        shard=_parse_shard(args.shard),
        postprocess=not args.no_postprocess,
        progress=True,
        fmt=args.format,
        run_dir=args.run,
        split=args.split,
        data_root=args.data_root,
        min_component_ml=args.min_component_ml,
        et_min_ml=args.et_min_ml,
        core_min_ml=args.core_min_ml,
        fragment_ml=args.fragment_ml,
        windows=args.windows,
        precision=args.precision,
        decode=args.decode,
        region_thresholds=args.region_thresholds,
    )
    where = f"the {args.split} split of {args.run}" if args.run else args.input
    print(f"wrote {len(paths)} segmentation(s) of {where} to {args.output}")
    return 0


def cmd_tune_postprocess(args: argparse.Namespace) -> int:
    from brats.evaluate import tune_postprocess

    result = tune_postprocess(
        args.run, args.checkpoint, progress=True, device=args.device, data_root=args.data_root
    )
    print(f"objective: {result['objective']}")
    print(
        f"{'min_component_ml':>16} {'et_min_ml':>9} {'WT':>6} {'TC':>6} {'ET':>6} {'mean':>6} {'changed':>7}"
    )
    for r in result["sweep"]:
        print(
            f"{r['min_component_ml']:>16g} {r['et_min_ml']:>9g} {r['dice_WT']:6.4f} {r['dice_TC']:6.4f} "
            f"{r['dice_ET']:6.4f} {r['objective']:6.4f} {r['changed']:>7}"
        )
    print(
        f"chosen on {len(result['val_cases'])} validation case(s): min_component_ml {result['min_component_ml']:g}, "
        f"et_min_ml {result['et_min_ml']:g} (mean Dice {result['score']:.4f}; without post-processing "
        f"{result['score_off']:.4f})"
    )
    print(f"stored in {result['checkpoint']} and {result['file']}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from brats.evaluate import format_summary, run_evaluate

    _source_args(args, "ref")
    summary = run_evaluate(
        pred_dir=args.pred,
        ref_root=args.ref,
        out_dir=args.out,
        empty=args.empty,
        missing=args.missing,
        progress=True,
        run_dir=args.run,
        split=args.split,
        data_root=args.data_root,
        lesion_variant=args.lesion_variant,
    )
    print(format_summary(summary))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from brats.demo import run_demo

    run_demo(
        output_dir=args.output_dir,
        n_cases=args.cases,
        minutes=args.minutes,
        seed=args.seed,
        shape=tuple(args.shape) if args.shape else None,
        max_steps=args.max_steps,
        progress=True,
        stress_cases=args.stress_cases,
    )
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from brats.serve import serve

    serve(
        args.checkpoint,
        host=args.host,
        port=args.port,
        cases=args.cases,
        max_upload_mb=args.max_upload_mb,
        device=args.device,
        max_queue=args.max_queue,
    )
    return 0


def cmd_config_reference(args: argparse.Namespace) -> int:
    from brats.config import config_reference_markdown

    sys.stdout.write(config_reference_markdown())
    return 0


# --------------------------------------------------------------------------------------------------------------
# Parser
# --------------------------------------------------------------------------------------------------------------
