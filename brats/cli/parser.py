"""The ``brats`` argument parser: one small function per sub-command."""

from __future__ import annotations

import argparse
from typing import Any

from brats import __version__
from brats.cli import commands as c

__all__ = ["build_parser"]


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


def _parser_validate(sub: Any) -> None:
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
        "--naming",
        default="auto",
        choices=["auto", "2020", "2021", "2023", "custom", "kaggle_3m"],
        help="naming scheme",
    )
    p.add_argument("--pattern", help="file pattern for --naming custom, e.g. '{case}_{modality}.nii.gz'")
    p.add_argument(
        "--quick", action="store_true", help="read headers and segmentations only (not image data)"
    )
    p.set_defaults(func=c.cmd_validate)


def _parser_synth(sub: Any) -> None:
    p = sub.add_parser(
        "synth",
        help="write a synthetic BraTS-like cohort (real anatomy, synthetic tumours)",
        description="Write N synthetic cases in a BraTS naming and label convention (240x240x155, 1 mm).",
    )
    p.add_argument("out_dir", help="output folder (one sub-folder per case)")
    p.add_argument("--cases", type=int, default=10, help="number of cases (default 10)")
    p.add_argument("--seed", type=int, default=0, help="random seed (same seed -> identical files)")
    p.add_argument(
        "--naming", default="2021", choices=["2020", "2021", "2023", "kaggle_3m"], help="naming scheme"
    )
    p.add_argument("--workers", type=int, default=1, help="worker processes")
    p.add_argument(
        "--shape", type=int, nargs=3, metavar=("X", "Y", "Z"), help="volume shape (default 240 240 155)"
    )
    p.add_argument(
        "--profile",
        default="train",
        choices=["train", "stress"],
        help="ranges of lesions, look-alikes and artefacts (default train; stress: outside them)",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        dest="settings",
        help="replace one setting of the profile (repeatable): a range as LOW,HIGH (--set noise=0.06,0.09), "
        "a count or probability as one number (--set p_thick=0.7); names in docs/synthetic.md",
    )
    p.set_defaults(func=c.cmd_synth)


def _parser_extract(sub: Any) -> None:
    p = sub.add_parser(
        "extract",
        help="normalise cases and write train/val patches to HDF5",
        description="Discover and validate the cases under data.root, split them by patient, normalise, and "
        "write OUTPUT_DIR/patches/{train,val}.h5 and OUTPUT_DIR/splits.json.",
    )
    _add_config_args(p)
    p.add_argument("--workers", type=int, default=1, help="worker processes for reading cases")
    p.set_defaults(func=c.cmd_extract)


def _parser_train(sub: Any) -> None:
    p = sub.add_parser(
        "train",
        help="train a segmentation model on the HDF5 patches",
        description="Train on OUTPUT_DIR/patches/{train,val}.h5; writes metrics.csv, curves.png, config.yaml "
        "and checkpoints/{last,best}.pt under OUTPUT_DIR.",
    )
    _add_config_args(p)
    p.add_argument("--resume", action="store_true", help="continue from OUTPUT_DIR/checkpoints/last.pt")
    p.set_defaults(func=c.cmd_train)


def _add_split_args(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument(
        "--run",
        metavar="RUN_DIR",
        default=None,
        help=f"run folder of `brats extract`: {what} exactly the cases of --split in RUN_DIR/splits.json",
    )
    p.add_argument("--split", choices=["train", "val", "test"], default=None, help="split of --run")
    p.add_argument(
        "--data-root", default=None, help="with --run: the data root, if it moved since extraction"
    )


def _add_postprocess_args(p: Any) -> None:
    """``brats predict``'s post-processing thresholds (mL; None: the checkpoint's or the config's)."""
    p.add_argument(
        "--min-component-ml",
        type=float,
        default=None,
        help="remove tumour components smaller than this (mL; 0 = off; default: the checkpoint's)",
    )
    p.add_argument(
        "--et-min-ml",
        type=float,
        default=None,
        help="relabel ET as NCR when smaller than this (mL; 0 = off; default: the checkpoint's)",
    )
    p.add_argument(
        "--core-min-ml",
        type=float,
        default=None,
        help="remove tumour components whose core (NCR + ET) is smaller than this (mL; 0 = off; default: the "
        "config's predict.postprocess.core_min_ml)",
    )
    p.add_argument(
        "--fragment-ml",
        type=float,
        default=None,
        help="inside each tumour component, relabel ET pieces smaller than this (other than the largest) as NCR "
        "and core pieces as edema (mL; 0 = off; default: the config's predict.postprocess.fragment_ml)",
    )


def _parser_predict(sub: Any) -> None:
    p = sub.add_parser(
        "predict",
        help="sliding-window prediction of whole cases, written as NIfTI on the input grid",
        description="Predict every case under --input (or exactly the cases of one split of a run: --run RUN_DIR "
        "--split test) and write OUTPUT/<case_id>.nii.gz in the case's label convention, on exactly the "
        "input's grid. Post-processing thresholds come from the checkpoint (chosen on validation by "
        "`brats tune-postprocess`) unless given here.",
    )
    p.add_argument(
        "--checkpoint", default=None, help="checkpoint file (default with --run: RUN_DIR/checkpoints/best.pt)"
    )
    p.add_argument(
        "--input", default=None, help="a case folder, a folder of cases, or a text file of case folders"
    )
    _add_split_args(p, "predict")
    p.add_argument("--output", required=True, help="output folder")
    p.add_argument("--overlap", type=float, default=None, help="window overlap in [0, 1) (default 0.5)")
    p.add_argument(
        "--blend", choices=["gaussian", "constant"], default=None, help="blending (default gaussian)"
    )
    p.add_argument("--tta", action="store_true", default=None, help="flip test-time augmentation")
    p.add_argument("--batch-size", type=int, default=None, help="windows per forward pass (default 16)")
    p.add_argument(
        "--precision",
        choices=["auto", "fp32", "bf16"],
        default=None,
        help="forward-pass precision (default auto: bf16 on a CPU where a short probe measures it faster)",
    )
    p.add_argument(
        "--windows",
        choices=["box", "patch"],
        default=None,
        help="2D: one window per slice's brain box (box, default) or training-patch sliding windows (patch)",
    )
    p.add_argument(
        "--decode",
        choices=["argmax", "regions"],
        default=None,
        help="softmax models: argmax, or the nested region rule (default: the config's predict.decode)",
    )
    p.add_argument(
        "--region-thresholds",
        type=float,
        nargs=3,
        default=None,
        metavar=("WT", "TC", "ET"),
        help="probability thresholds of the region rule (default: the config's predict.region_thresholds)",
    )
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--probabilities", action="store_true", help="also write <case_id>_prob.nii.gz (float16)")
    p.add_argument("--shard", default=None, metavar="I/N", help="predict every N-th case starting at I")
    p.add_argument(
        "--format",
        default="nifti",
        choices=["nifti", "tif"],
        help="tif (kaggle_3m only): also write OUTPUT/<case>/<case>_<k>_mask.tif (0/255)",
    )
    p.add_argument("--no-postprocess", action="store_true", help="skip every post-processing rule below")
    _add_postprocess_args(p)
    p.set_defaults(func=c.cmd_predict)


def _parser_tune_postprocess(sub: Any) -> None:
    p = sub.add_parser(
        "tune-postprocess",
        help="choose the post-processing thresholds on the validation split and store them in the checkpoint",
        description="Predict the validation split of RUN_DIR/splits.json once, score a grid of post-processing "
        "thresholds (min_component_ml x et_min_ml) by the mean of WT, TC and ET Dice over the validation "
        "cases, and store the best pair and the sweep table in the checkpoint and RUN_DIR/postprocess.json.",
    )
    p.add_argument("--run", metavar="RUN_DIR", required=True, help="run folder (splits.json, checkpoints/)")
    p.add_argument(
        "--checkpoint",
        default=None,
        help="checkpoint to tune and rewrite (default RUN_DIR/checkpoints/best.pt)",
    )
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--data-root", default=None, help="the data root, if it moved since extraction")
    p.set_defaults(func=c.cmd_tune_postprocess)


def _parser_evaluate(sub: Any) -> None:
    p = sub.add_parser(
        "evaluate",
        help="legacy and lesion-wise Dice, HD95 and lesion counts of predictions against references",
        description="Score OUTPUT/<case_id>.nii.gz predictions against the reference segmentations under --ref "
        "(or exactly the cases of one split of a run: --run RUN_DIR --split test).",
    )
    p.add_argument("--pred", required=True, help="folder of <case_id>.nii.gz predictions")
    p.add_argument("--ref", default=None, help="folder of reference cases (any BraTS naming)")
    _add_split_args(p, "score")
    p.add_argument(
        "--out", default=None, help="output folder for cases.csv and summary.json (default: --pred)"
    )
    p.add_argument(
        "--empty",
        choices=["brats", "nan"],
        default="brats",
        help="rule for empty masks in the legacy metrics (see docs/metrics.md)",
    )
    p.add_argument(
        "--missing", choices=["error", "zero"], default="error", help="a missing prediction: error or empty"
    )
    p.add_argument(
        "--lesion-variant",
        choices=["official", "2023"],
        default="official",
        help="lesion-wise rules: the official brats-evaluation package's (default) or BraTS 2023's "
        "(docs/metrics-lesionwise.md)",
    )
    p.set_defaults(func=c.cmd_evaluate)


def _parser_demo(sub: Any) -> None:
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
    p.add_argument(
        "--stress-cases",
        type=int,
        default=None,
        help="stress-profile cases scored at the end (default 8; 0: none)",
    )
    p.set_defaults(func=c.cmd_demo)


def _parser_serve(sub: Any) -> None:
    p = sub.add_parser(
        "serve",
        help="local web app: segment a case and view it (FastAPI + NiiVue)",
        description="Load CHECKPOINT once and serve a page to pick (--cases) or upload a case, segment it and "
        "view it over the scans, plus an HTTP API (see docs/serve.md).",
    )
    p.add_argument("--checkpoint", required=True, help="checkpoint file (best.pt or last.pt)")
    p.add_argument("--cases", default=None, help="folder of BraTS cases to offer on the page")
    p.add_argument(
        "--host", default="127.0.0.1", help="interface (default 127.0.0.1; there is no authentication)"
    )
    p.add_argument("--port", type=int, default=8000, help="TCP port (default 8000)")
    p.add_argument("--max-upload-mb", type=float, default=256, help="largest upload in MiB (default 256)")
    p.add_argument("--max-queue", type=int, default=4, help="segmentations allowed to wait (default 4)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.set_defaults(func=c.cmd_serve)


def _parser_config_reference(sub: Any) -> None:
    p = sub.add_parser(
        "config-reference", help="print the config reference (Markdown) generated from the code"
    )
    p.set_defaults(func=c.cmd_config_reference)


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
    _parser_validate(sub)
    _parser_synth(sub)
    _parser_extract(sub)
    _parser_train(sub)
    _parser_predict(sub)
    _parser_tune_postprocess(sub)
    _parser_evaluate(sub)
    _parser_demo(sub)
    _parser_serve(sub)
    _parser_config_reference(sub)
    return parser
