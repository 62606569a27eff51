"""Reporting of saved ``bench/generalise.py`` results: the Markdown table (``--table``), the seed means a recipe
is chosen on (``--mean``), and the one-line summaries under the table (validation cases every result shares, the
epoch each class was learnt)."""

from __future__ import annotations

COHORTS = ("val", "select", "select_stress", "test", "stress")


def table(recs: dict[str, dict]) -> str:
    """A Markdown table of saved results (``{name: record}``): mean Dice WT/TC/ET and lesion-wise WT F1 per
    cohort, per result."""
    head = "| result | epochs | train s | load at bench start |"
    sep = "| --- | --- | --- | --- |"
    cohorts = [c for c in COHORTS if any(c in rec["result"] for rec in recs.values())]
    for cohort in cohorts:
        head += f" {cohort} WT / TC / ET | {cohort} lesion WT F1 |"
        sep += " --- | --- |"
    pick = "select" in cohorts and "select_stress" in cohorts
    if pick:
        head += " selection mean |"
        sep += " --- |"
    lines = [head, sep]
    for name, rec in recs.items():
        r, load_1 = rec["result"], (rec["load"]["before"] or ["-"])[0]
        row = f"| {name} | {r['epochs']} | {r.get('seconds', {}).get('train', '-')} | {load_1} |"
        for cohort in cohorts:
            if cohort not in r:
                row += " - | - |"
                continue
            c = r[cohort]
            dice = " / ".join("-" if c[k] is None else f"{c[k]:.3f}" for k in ("WT", "TC", "ET"))
            f1 = c.get("lesion_WT_f1")
            row += f" {dice} | {'-' if f1 is None else f'{f1:.2f}'} |"
        if pick:
            row += f" {_selection_mean(r)} |"
        lines.append(row)
    shared = shared_cases(recs, "val")
    if shared:
        lines += ["", shared]
    learnt = learnt_epochs(recs)
    if learnt:
        lines += ["", learnt]
    return "\n".join(lines)


def learnt_epochs(recs: dict, level: float = 0.5) -> str:
    """One line: per result, the first epoch whose patch-level validation Dice of NCR and of ET reached ``level``
    ('never' if none did), from ``metrics_per_epoch``; '' when no result has it (results saved before it was
    recorded)."""
    parts = []
    for name, rec in recs.items():
        rows = rec["result"].get("metrics_per_epoch")
        if not rows:
            continue
        first = []
        for k in ("NCR", "ET"):
            hit = [int(r["epoch"]) for r in rows if r.get(f"val_dice_{k}", 0) >= level]
            first.append(str(hit[0]) if hit else "never")
        parts.append(f"{name} {' / '.join(first)} of {len(rows)}")
    if not parts:
        return ""
    return f"first epoch with validation NCR / ET Dice >= {level}: " + "; ".join(parts)


def shared_cases(recs: dict, cohort: str) -> str:
    """One line: the mean WT / TC / ET of each result over the ``cohort`` cases that every result scored (runs
    with different case counts have different splits); '' when a result has no per-case scores or none shared."""
    per_case = [rec["result"].get(cohort, {}).get("per_case") for rec in recs.values()]
    if not all(per_case):
        return ""
    ids = sorted(set.intersection(*(set(p) for p in per_case)))
    if not ids:
        return ""
    parts = []
    for name, cases in zip(recs, per_case):
        means = []
        for k in ("WT", "TC", "ET"):
            values = [cases[i][k] for i in ids if cases[i][k] is not None]
            means.append(f"{sum(values) / len(values):.3f}" if values else "-")
        parts.append(f"{name} {' / '.join(means)}")
    return f"{cohort} cases shared by every result ({', '.join(ids)}), mean WT / TC / ET: " + "; ".join(parts)


def seed_means(recs: dict[str, dict], groups: list[str]) -> str:
    """One line per ``NAME=r1,r2,...`` group: the mean over its results of the selection mean, of the ``select``
    objective ((WT + TC + ET) / 3 on ``select``, the objective of ``tune-postprocess``) and of the ``val`` mean
    (WT, TC, ET): the figures a recipe is chosen on.

    Raises:
        ValueError: a malformed group, or one naming a result not in ``recs`` or without selection cohorts.
    """
    lines = []
    for group in groups:
        label, sep, names = group.partition("=")
        members = [n for n in names.split(",") if n]
        if not sep or not members or any(n not in recs for n in members):
            raise ValueError(f"--mean {group!r}: expected NAME=R1,R2,... naming results given to --table")
        sel, obj, val = [], [], []
        for n in members:
            r = recs[n]["result"]
            pick = _selection_values(r)
            if pick is None:
                raise ValueError(f"--mean {group!r}: {n} has no selection cohorts")
            sel.append(sum(pick) / len(pick))
            obj.append(sum(pick[:3]) / 3)
            val.append(sum(r["val"][k] for k in ("WT", "TC", "ET")) / 3)
        lines.append(
            f"{label} (mean of {len(members)}: {', '.join(members)}): selection mean {sum(sel) / len(sel):.3f}, "
            f"select objective {sum(obj) / len(obj):.3f}, val mean {sum(val) / len(val):.3f}"
        )
    return "\n".join(lines)


def _selection_values(result: dict) -> list[float] | None:
    """WT, TC and ET Dice of ``select`` and ``select_stress`` (None if any is absent)."""
    values = [result.get(c, {}).get(k) for c in ("select", "select_stress") for k in ("WT", "TC", "ET")]
    return None if any(v is None for v in values) else values


def _selection_mean(result: dict) -> str:
    """The choice score: the mean of WT, TC and ET Dice over ``select`` and ``select_stress`` ('-' if absent)."""
    values = _selection_values(result)
    return "-" if values is None else f"{sum(values) / len(values):.3f}"
