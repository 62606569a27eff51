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
        profile=args.profile,
    )
    print(f"wrote {len(paths)} cases ({args.profile} profile) to {args.out_dir}")
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


def cmd_predict(args: argparse.Namespace) -> int:
    from brats.predict import run_predict

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
    from brats.evaluate import format_summary, run_evaluate

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
        stress_cases=args.stress_cases,
    )
    return 0


def cmd_config_reference(args: argparse.Namespace) -> int:
    from brats.config import config_reference_markdown

    sys.stdout.write(config_reference_markdown())
    return 0


# --------------------------------------------------------------------------------------------------------------
# Parser
# --------------------------------------------------------------------------------------------------------------
