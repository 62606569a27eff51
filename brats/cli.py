"""The ``brats`` command: ``brats validate | synth | extract | train | predict | evaluate | demo``.

Each sub-command parses its arguments and calls one library function; ``tools/*.py`` call :func:`main`.
User-facing errors (:class:`brats.errors.BratsError`) are printed on one line and exit with status 1.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys

# Idle OpenMP threads should sleep, not spin: with spinning threads, torch on a 2-core machine slows down
# several-fold as soon as another busy process shares it (see docs/performance.md). Must precede importing torch.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from brats import __version__
from brats.errors import BratsError

log = logging.getLogger("brats")


# --------------------------------------------------------------------------------------------------------------
# Shared argument groups
# --------------------------------------------------------------------------------------------------------------


def _add_config_args(p: argparse.ArgumentParser, required: bool = True) -> None:
    p.add_argument(
        "--config", "-c", required=required, help="experiment config (YAML), e.g. configs/demo.yaml"
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key, e.g. --set train.lr=3e-4 (repeatable; values are parsed as YAML)",
    )
    p.add_argument("--print-config", action="store_true", help="print the resolved config (YAML) and exit")


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
    from brats.io import validate_cohort

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
    from brats.synth import generate_cohort

    shape = tuple(args.shape) if args.shape else None
    paths = generate_cohort(
        args.out_dir,
        n_cases=args.cases,
        seed=args.seed,
        naming=args.naming,
        workers=args.workers,
        shape=shape,
        progress=True,
    )
    print(f"wrote {len(paths)} cases to {args.out_dir}")
    return 0


def cmd_extract(args: argparse.Namespace) -> int:
    cfg = _load_cfg(args)
    from brats.patches import run_extract

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


def cmd_predict(args: argparse.Namespace) -> int:
    from brats.infer import run_predict

    paths = run_predict(
        checkpoint=args.checkpoint,
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
    )
    print(f"wrote {len(paths)} segmentation(s) to {args.output}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from brats.metrics import format_summary, run_evaluate

    summary = run_evaluate(
        pred_dir=args.pred,
        ref_root=args.ref,
        out_dir=args.out,
        empty=args.empty,
        missing=args.missing,
        progress=True,
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
    )
    return 0


def cmd_config_reference(args: argparse.Namespace) -> int:
    from brats.config import config_reference_markdown

    sys.stdout.write(config_reference_markdown())
    return 0


# --------------------------------------------------------------------------------------------------------------
# Parser
# --------------------------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="brats",
        description="Brain-tumour segmentation on multimodal MRI (BraTS): read, extract, train, predict, evaluate.",
    )
    parser.add_argument("--version", action="version", version=f"brats {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser(
        "validate",
        help="check a folder of BraTS cases (files, shapes, affines, labels)",
        description="Find the cases under ROOT (2020, 2021 or 2023 naming), check that every modality is "
        "present and readable, that shapes and affines agree (to 1e-4) across modalities and segmentation, "
        "and that labels belong to the naming's scheme. Exits 0 only when there is no problem.",
    )
    p.add_argument("root", help="folder of case folders (or one case folder)")
    p.add_argument(
        "--json", action="store_true", help='print one JSON object {"scheme", "cases", "problems"}'
    )
    p.add_argument(
        "--naming", default="auto", choices=["auto", "2020", "2021", "2023", "custom"], help="naming scheme"
    )
    p.add_argument("--pattern", help="file pattern for --naming custom, e.g. '{case}_{modality}.nii.gz'")
    p.add_argument(
        "--quick", action="store_true", help="read headers and segmentations only (not image data)"
    )
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser(
        "synth",
        help="write a synthetic BraTS-like cohort (real anatomy, synthetic tumours)",
        description="Write N synthetic cases in a BraTS naming and label convention (240x240x155, 1 mm).",
    )
    p.add_argument("out_dir", help="output folder (one sub-folder per case)")
    p.add_argument("--cases", type=int, default=10, help="number of cases (default 10)")
    p.add_argument("--seed", type=int, default=0, help="random seed (same seed -> identical files)")
    p.add_argument("--naming", default="2021", choices=["2020", "2021", "2023"], help="naming scheme")
    p.add_argument("--workers", type=int, default=1, help="worker processes")
    p.add_argument(
        "--shape", type=int, nargs=3, metavar=("X", "Y", "Z"), help="volume shape (default 240 240 155)"
    )
    p.set_defaults(func=cmd_synth)

    p = sub.add_parser(
        "extract",
        help="normalise cases and write train/val patches to HDF5",
        description="Discover and validate the cases under data.root, split them by patient, normalise, and "
        "write OUTPUT_DIR/patches/{train,val}.h5 and OUTPUT_DIR/splits.json.",
    )
    _add_config_args(p)
    p.add_argument("--workers", type=int, default=1, help="worker processes for reading cases")
    p.set_defaults(func=cmd_extract)

    p = sub.add_parser(
        "train",
        help="train a segmentation model on the HDF5 patches",
        description="Train on OUTPUT_DIR/patches/{train,val}.h5; writes metrics.csv, curves.png, config.yaml "
        "and checkpoints/{last,best}.pt under OUTPUT_DIR.",
    )
    _add_config_args(p)
    p.add_argument("--resume", action="store_true", help="continue from OUTPUT_DIR/checkpoints/last.pt")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser(
        "predict",
        help="sliding-window prediction of whole cases, written as NIfTI on the input grid",
        description="Predict every case under --input and write OUTPUT/<case_id>.nii.gz in the case's label "
        "convention, on exactly the input's grid.",
    )
    p.add_argument("--checkpoint", required=True, help="checkpoint file (best.pt or last.pt)")
    p.add_argument(
        "--input", required=True, help="a case folder, a folder of cases, or a text file of case folders"
    )
    p.add_argument("--output", required=True, help="output folder")
    p.add_argument("--overlap", type=float, default=None, help="window overlap in [0, 1) (default 0.5)")
    p.add_argument(
        "--blend", choices=["gaussian", "constant"], default=None, help="blending (default gaussian)"
    )
    p.add_argument("--tta", action="store_true", default=None, help="flip test-time augmentation")
    p.add_argument("--batch-size", type=int, default=None, help="windows per forward pass (default 16)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--probabilities", action="store_true", help="also write <case_id>_prob.nii.gz (float16)")
    p.add_argument("--shard", default=None, metavar="I/N", help="predict every N-th case starting at I")
    p.add_argument(
        "--no-postprocess", action="store_true", help="skip small-component removal and the ET rule"
    )
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser(
        "evaluate",
        help="per-class and per-region Dice, IoU, HD95 of predictions against references",
        description="Score OUTPUT/<case_id>.nii.gz predictions against the reference segmentations under --ref.",
    )
    p.add_argument("--pred", required=True, help="folder of <case_id>.nii.gz predictions")
    p.add_argument("--ref", required=True, help="folder of reference cases (any BraTS naming)")
    p.add_argument(
        "--out", default=None, help="output folder for cases.csv and summary.json (default: --pred)"
    )
    p.add_argument(
        "--empty",
        choices=["brats", "nan"],
        default="brats",
        help="rule for empty masks (see docs/metrics.md)",
    )
    p.add_argument(
        "--missing", choices=["error", "zero"], default="error", help="a missing prediction: error or empty"
    )
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser(
        "demo",
        help="the whole pipeline on a synthetic cohort, with an HTML report",
        description="Synthesise a cohort, extract patches, train configs/demo.yaml within a time budget, "
        "predict the test split, evaluate, and write OUTPUT_DIR/report.html.",
    )
    p.add_argument("--output-dir", default="runs/demo", help="run folder (default runs/demo)")
    p.add_argument("--cases", type=int, default=None, help="number of synthetic cases")
    p.add_argument("--minutes", type=float, default=None, help="training time budget in minutes")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument(
        "--shape", type=int, nargs=3, metavar=("X", "Y", "Z"), help="volume shape (tests use small ones)"
    )
    p.add_argument("--max-steps", type=int, default=None, help="cap on training steps (tests)")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser(
        "config-reference", help="print the config reference (Markdown) generated from the code"
    )
    p.set_defaults(func=cmd_config_reference)
    return parser


def setup_logging(verbose: bool = False, quiet: bool = False) -> None:
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S"
    )


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.verbose, args.quiet)
    try:
        return int(args.func(args) or 0)
    except BratsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def entry() -> None:  # console-script entry point
    sys.exit(main())


if __name__ == "__main__":
    entry()
