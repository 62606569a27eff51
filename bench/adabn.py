"""Per-case batch-norm adaptation at prediction (AdaBN): a first look on the selection cohorts.

    python bench/adabn.py --run /tmp/demo-q38 --name q38 --select 32 --seed 0
    python bench/adabn.py --table q38

Before predicting a case, the batch norms' running statistics are replaced by those of that case's own windows
(one forward pass of the case in batch-norm training mode, statistics averaged over its batches; no weight
changes), then the case is predicted with them. The idea (Li et al., "Revisiting batch normalization for
practical domain adaptation", 2016): a scan whose contrast, bias or noise differs from training shifts the
features the batch norms were fitted to, and the case's own statistics undo part of that shift. Each cohort is
predicted twice, with the checkpoint's statistics (``base``) and adapted (``adabn``), both in float32 with the
batch norms left unfolded, the checkpoint's other prediction settings and post-processing, and scored like
``bench/generalise.py`` (region Dice, lesion-wise F1, ``cohort_scores``). The cohorts are the selection ones
of ``bench/generalise.py --select N`` (``runs/select-<seed>-<N>/``), never the test split or stress cohort.

Writes ``bench/results/adabn-<name>.json``; ``--table`` prints saved results.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from generalise import SELECT_SEED_OFFSET  # noqa: E402  (loads no torch)
from results_io import load_now, read_result, write_result  # noqa: E402

ARMS = ("base", "adabn")
#: The selection cohorts of bench/generalise.py: name -> (seed offset, synth profile).
COHORTS = {
    name: (offset, "stress" if name == "select_stress" else "train")
    for name, offset in SELECT_SEED_OFFSET.items()
}


def _skip_single_values(module, args):
    x = args[0]
    if x.numel() // x.shape[1] <= 1:
        module.eval()


def _back_to_training(module, args, output) -> None:
    module.train()


def adapted(model, case, settings, loaded):
    """A copy of ``model`` whose batch norms hold the statistics of ``case``'s windows (eval mode)."""
    import torch

    from brats.predict import predict_probabilities

    out = copy.deepcopy(model)
    hooks = []
    for bn in out.modules():
        if not isinstance(bn, torch.nn.modules.batchnorm._BatchNorm):
            continue
        bn.reset_running_stats()
        bn.momentum = None  # a plain average over the case's batches
        bn.train()
        # a batch with one value per channel (one small window, pooled to 1 x 1) has no statistics: it runs on
        # those gathered so far and leaves them as they are
        hooks += [
            bn.register_forward_pre_hook(_skip_single_values),
            bn.register_forward_hook(_back_to_training),
        ]
    predict_probabilities(out, case, settings, loaded=loaded)
    for hook in hooks:
        hook.remove()
    return out.eval()


def score_arms(checkpoint: Path, root: Path, out: Path) -> dict:
    from generalise import cohort_scores

    from brats.data import discover_cases
    from brats.demo import lesion_summary
    from brats.evaluate import run_evaluate
    from brats.networks import model_from_checkpoint
    from brats.predict import predict_case
    from brats.predict.predictor import load_input
    from brats.predict.settings import settings_from_checkpoint

    model, ckpt = model_from_checkpoint(checkpoint, "cpu")
    model.eval()
    settings = settings_from_checkpoint(ckpt)
    settings.check(str(checkpoint))
    result = {}
    for arm in ARMS:
        start = time.perf_counter()
        for case in discover_cases(root):
            loaded = load_input(case, settings)
            net = adapted(model, case, settings, loaded) if arm == "adabn" else model
            predict_case(net, case, settings, out / arm / "predictions", loaded=loaded)
        summary = run_evaluate(out / arm / "predictions", root, out_dir=out / arm / "evaluation")
        result[arm] = cohort_scores({"summary": summary, "lesion": lesion_summary(summary)})
        result[arm]["seconds"] = round(time.perf_counter() - start, 1)
        print(
            f"{root.name} {arm}: WT {result[arm]['WT']} TC {result[arm]['TC']} ET {result[arm]['ET']}",
            flush=True,
        )
    return result


def table(names: list[str]) -> str:
    lines = [
        "| result | cohort | arm | WT / TC / ET | lesion WT F1 | objective (WT + TC + ET) / 3 |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    notes = []
    for name in names:
        rec = read_result(f"adabn-{name}")
        if rec is None:
            raise ValueError(f"no saved result bench/results/adabn-{name}.json")
        objectives: dict[str, dict[str, float]] = {arm: {} for arm in ARMS}
        for cohort, arms in rec["result"]["cohorts"].items():
            for arm in ARMS:
                r = arms[arm]
                dice = " / ".join(f"{r[k]:.3f}" for k in ("WT", "TC", "ET"))
                objectives[arm][cohort] = (r["WT"] + r["TC"] + r["ET"]) / 3
                lines.append(
                    f"| {name} | {cohort} | {arm} | {dice} | {r['lesion_WT_f1']:.3f} | "
                    f"{objectives[arm][cohort]:.3f} |"
                )
        if set(objectives["base"]) == set(COHORTS):  # the selection mean of bench/generalise.py
            sel = {arm: sum(objectives[arm].values()) / len(COHORTS) for arm in ARMS}
            notes.append(
                f"{name}: selection mean base {sel['base']:.3f}, adabn {sel['adabn']:.3f} "
                f"({sel['adabn'] - sel['base']:+.3f})"
            )
    return "\n".join(lines + ([""] + notes if notes else []))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, help="a run folder with checkpoints/best.pt")
    ap.add_argument("--name", help="result name: bench/results/adabn-<name>.json")
    ap.add_argument("--select", type=int, default=32, help="cases per selection cohort (default 32)")
    ap.add_argument(
        "--seed", type=int, default=0, help="seed of the selection cohorts (as bench/generalise.py)"
    )
    ap.add_argument("--cohorts", nargs="+", choices=list(COHORTS), default=list(COHORTS))
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--table", nargs="+", metavar="NAME", help="print saved results; run nothing")
    args = ap.parse_args(argv)
    if args.table:
        try:
            print(table(args.table))
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        return 0
    if args.run is None or args.name is None:
        ap.error("--run and --name are required unless --table is given")
    checkpoint = args.run / "checkpoints" / "best.pt"
    if not checkpoint.is_file():
        ap.error(f"{checkpoint}: no such checkpoint")
    from cached_cohort import cached_cohort

    before = load_now()
    cohorts = {}
    for cohort in args.cohorts:
        offset, profile = COHORTS[cohort]
        root = Path("runs") / f"select-{args.seed}-{args.select}" / cohort
        cached_cohort(root, args.select, args.seed + offset, profile, args.workers, None)
        # one folder per cohort and size: another --select never mixes its predictions with these
        out = args.run / f"bench_adabn_{cohort}-{args.seed}-{args.select}"
        cohorts[cohort] = score_arms(checkpoint, root, out)
    payload = {"run": str(args.run), "select": args.select, "seed": args.seed, "cohorts": cohorts}
    path = write_result(f"adabn-{args.name}", payload, before)
    print(json.dumps({"written": str(path)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
