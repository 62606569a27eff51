"""The HTML report of a run: metrics tables, training curves and slice overlays (matplotlib, self-contained).

The page embeds every image as a base64 PNG (the PNG files are also written beside it), uses no script and no
external resource, so it renders in a browser without network access.
"""

from __future__ import annotations

import base64
import csv
import html
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from brats.fs import atomic_path, atomic_write_text

log = logging.getLogger(__name__)

__all__ = ["tumour_center", "overlay_figure", "write_report", "read_cases_csv", "print_demo_result"]

#: Overlay colours of the training classes (ITK-SNAP-like): NCR red, ED green, ET yellow.
CLASS_COLOURS = {1: (0.90, 0.10, 0.10), 2: (0.10, 0.80, 0.20), 3: (1.00, 0.85, 0.00)}
CLASS_LABELS = {1: "NCR", 2: "ED", 3: "ET"}


def tumour_center(classes: np.ndarray, fallback: np.ndarray | None = None) -> tuple[int, int, int]:
    """Voxel ``(x, y, z)`` through which to cut the views: the centre of mass of the tumour (classes > 0),
    else of ``fallback`` (e.g. the prediction), else of the volume."""
    for mask in (classes > 0, None if fallback is None else fallback > 0):
        if mask is not None and mask.any():
            idx = np.argwhere(mask)
            centre = idx.mean(axis=0)
            # snap to the tumour voxel nearest the centre of mass so the cut always shows tumour
            nearest = idx[np.argmin(((idx - centre) ** 2).sum(axis=1))]
            return tuple(int(v) for v in nearest)  # type: ignore[return-value]
    return tuple(s // 2 for s in classes.shape)  # type: ignore[return-value]


def _rgba(classes2d: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    out = np.zeros((*classes2d.shape, 4), dtype=np.float32)
    for c, colour in CLASS_COLOURS.items():
        m = classes2d == c
        out[m, :3] = colour
        out[m, 3] = alpha
    return out


def _views(volume: np.ndarray, centre: tuple[int, int, int]) -> dict[str, np.ndarray]:
    """Axial, coronal and sagittal cuts, oriented for display (anterior / superior up)."""
    x, y, z = centre
    return {
        "axial": np.rot90(volume[:, :, z]),
        "coronal": np.rot90(volume[:, y, :]),
        "sagittal": np.rot90(volume[x, :, :]),
    }


def overlay_figure(
    flair: np.ndarray,
    t1ce: np.ndarray,
    ref: np.ndarray | None,
    pred: np.ndarray,
    out_png: str | Path,
    title: str = "",
) -> Path:
    """Write a 3x4 PNG: rows axial / coronal / sagittal through the tumour; columns FLAIR + reference,
    FLAIR + prediction, T1ce + reference, T1ce + prediction.

    Args:
        flair, t1ce: ``(X, Y, Z)`` intensities.
        ref, pred: ``(X, Y, Z)`` training classes (0..3); ``ref`` may be None (no reference).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    centre = tumour_center(ref if ref is not None else pred, fallback=pred)
    ref_ = ref if ref is not None else np.zeros_like(pred)
    columns = [
        ("FLAIR", flair, ref_, "reference"),
        ("FLAIR", flair, pred, "prediction"),
        ("T1ce", t1ce, ref_, "reference"),
        ("T1ce", t1ce, pred, "prediction"),
    ]
    fig, axes = plt.subplots(3, 4, figsize=(12, 9.6), facecolor="black")
    for col, (name, img, lab, kind) in enumerate(columns):
        nz = img[img != 0]
        vmin, vmax = np.percentile(nz, [0.5, 99.5]) if nz.size else (0.0, 1.0)
        img_views, lab_views = _views(img, centre), _views(lab, centre)
        for row, view in enumerate(("axial", "coronal", "sagittal")):
            ax = axes[row, col]
            ax.imshow(img_views[view], cmap="gray", vmin=vmin, vmax=vmax, interpolation="nearest")
            ax.imshow(_rgba(lab_views[view]), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(f"{name} + {kind}", color="white", fontsize=11)
            if col == 0:
                ax.set_ylabel(view, color="white", fontsize=11)
    handles = [Patch(color=CLASS_COLOURS[c], label=CLASS_LABELS[c]) for c in (1, 2, 3)]
    fig.legend(handles=handles, loc="lower center", ncol=3, frameon=False, labelcolor="white")
    fig.suptitle(f"{title}   (cut through voxel {centre})", color="white", fontsize=12)
    fig.tight_layout(rect=(0, 0.04, 1, 0.96))
    out_png = Path(out_png)
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, dpi=72, facecolor="black", format="png")
    plt.close(fig)
    return out_png


def read_cases_csv(path: str | Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _img_tag(png: Path, alt: str) -> str:
    data = base64.b64encode(Path(png).read_bytes()).decode("ascii")
    return (
        f'<img src="data:image/png;base64,{data}" alt="{html.escape(alt)}" title="{html.escape(png.name)}">'
    )


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None or value == "":
        return "–"
    try:
        v = float(value)
    except (TypeError, ValueError):
        return html.escape(str(value))
    if np.isnan(v):
        return "n/a"
    return f"{v:.{digits}f}" if abs(v) < 1000 else f"{v:.0f}"


_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;max-width:1250px;color:#222}
h1{margin-bottom:.1em} .sub{color:#666;margin-top:0}
table{border-collapse:collapse;margin:1em 0;font-size:14px} th,td{border:1px solid #ccc;padding:4px 8px;text-align:right}
th{background:#f0f0f0} td.l,th.l{text-align:left} img{max-width:100%;border:1px solid #ddd}
code,pre{background:#f6f6f6;padding:2px 4px} pre{padding:8px;overflow-x:auto}
.good{background:#e6f4e6} .bad{background:#fbe9e7}
"""


def _cohort_table(cohorts: dict[str, tuple[list[dict[str, Any]], dict[str, Any]]]) -> str:
    """Mean Dice per region and lesion-wise F1 of each cohort, one column per cohort."""
    if not cohorts:
        return ""
    names = list(cohorts)
    head = "".join(f"<th>{html.escape(n)}</th>" for n in names)
    rows = []
    for region in ("WT", "TC", "ET", "NCR", "ED"):
        cells = ""
        for n in names:
            row = next((r for r in cohorts[n][0] if r["name"] == region), {})
            ci = row.get("dice_ci95")
            interval = "" if not ci else f" <small>[{_fmt(ci[0])}, {_fmt(ci[1])}]</small>"
            cells += f"<td>{_fmt(row.get('dice'))}{interval}</td>"
        rows.append(f"<tr><td class='l'>{region} Dice</td>{cells}</tr>")
    for region in ("WT", "TC", "ET"):
        cells = "".join(f"<td>{_fmt(cohorts[n][1].get(f'{region}_f1'))}</td>" for n in names)
        rows.append(f"<tr><td class='l'>{region} lesion-wise F1</td>{cells}</tr>")
    return (
        "<h2>Test split and stress cohort</h2><p>Mean Dice over cases [95 % bootstrap interval of the mean: how "
        "far a mean over this few cases can be trusted]; lesion-wise F1 from lesion TP/FP/FN "
        "summed over the cases (official BraTS rules). The stress cohort (<code>brats synth --profile stress"
        "</code>, its own seed) is never trained or selected on: fainter lesions, more look-alikes, stronger "
        "artefacts (<code>docs/synthetic.md</code>).</p>"
        f"<table><tr><th class='l'>metric</th>{head}</tr>{''.join(rows)}</table>"
    )


def write_report(
    out_html: str | Path,
    *,
    title: str,
    summary_rows: list[dict[str, Any]],
    pooled_rows: list[dict[str, Any]],
    case_rows: list[dict[str, str]],
    curves_png: Path | None,
    figures: list[tuple[str, Path]],
    facts: list[tuple[str, str]],
    notes: str = "",
    cohorts: dict[str, tuple[list[dict[str, Any]], dict[str, Any]]] | None = None,
) -> Path:
    """Write the self-contained HTML report.

    Args:
        summary_rows: one dict per class/region with keys ``name`` and the per-case means (``dice``, ``iou``,
            ``hd95``, ``precision``, ``recall``) plus ``n`` (cases).
        pooled_rows: one dict per class/region with pooled ("micro") ``dice``, ``iou``, ``precision``, ``recall``.
        case_rows: rows of ``cases.csv``.
        figures: ``(case_id, png)`` overlay figures.
        facts: ``(label, value)`` pairs shown at the top (timings, paths, config).
        cohorts: name (``test``, ``stress``) -> (its summary rows, its lesion sums with ``WT_f1``...), side by side.
    """
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        "<p class='sub'>Synthetic cohort, test split; every figure below was computed by this run.</p>",
        "<table>"
        + "".join(f"<tr><th class='l'>{html.escape(k)}</th><td class='l'>{v}</td></tr>" for k, v in facts)
        + "</table>",
        _cohort_table(cohorts or {}),
        "<h2>Test metrics (mean over cases)</h2>",
        "<p>Per-case scores averaged over the test cases, BraTS empty-mask rule (see <code>docs/metrics.md</code>). "
        "HD95 in mm. Regions: WT = NCR+ED+ET, TC = NCR+ET.</p>",
        "<table><tr><th class='l'>class / region</th><th>Dice</th><th>IoU</th><th>HD95 (mm)</th>"
        "<th>precision</th><th>recall</th><th>cases</th></tr>",
    ]
    for r in summary_rows:
        parts.append(
            f"<tr><td class='l'>{html.escape(r['name'])}</td><td>{_fmt(r.get('dice'))}</td><td>{_fmt(r.get('iou'))}</td>"
            f"<td>{_fmt(r.get('hd95'), 2)}</td><td>{_fmt(r.get('precision'))}</td><td>{_fmt(r.get('recall'))}</td>"
            f"<td>{_fmt(r.get('n'), 0)}</td></tr>"
        )
    parts.append('</table><h2>Pooled over all test voxels (the seed article\'s "micro" figures)</h2>')
    parts.append(
        "<table><tr><th class='l'>class / region</th><th>Dice</th><th>IoU</th><th>precision</th><th>recall</th></tr>"
    )
    for r in pooled_rows:
        parts.append(
            f"<tr><td class='l'>{html.escape(r['name'])}</td><td>{_fmt(r.get('dice'))}</td><td>{_fmt(r.get('iou'))}</td>"
            f"<td>{_fmt(r.get('precision'))}</td><td>{_fmt(r.get('recall'))}</td></tr>"
        )
    parts.append("</table><h2>Per case</h2>")
    cols = (
        [f"{n}_{m}" for n in ("WT", "TC", "ET") for m in ("dice", "hd95")]
        + [f"{n}_dice" for n in ("NCR", "ED")]
        + [f"{n}_iou" for n in ("NCR", "ED", "ET")]
    )
    parts.append("<table><tr><th class='l'>case</th>" + "".join(f"<th>{c}</th>" for c in cols) + "</tr>")
    for row in case_rows:
        cells = "".join(f"<td>{_fmt(row.get(c), 2 if c.endswith('hd95') else 3)}</td>" for c in cols)
        parts.append(f"<tr><td class='l'>{html.escape(row['case'])}</td>{cells}</tr>")
    parts.append("</table>")
    if curves_png is not None and Path(curves_png).is_file():
        parts.append("<h2>Training curves</h2>" + _img_tag(Path(curves_png), "training curves"))
    if figures:
        parts.append(
            "<h2>Test cases</h2><p>Axial, coronal and sagittal slices through the tumour. Colours: "
            "<b style='color:#e61a1a'>NCR</b>, <b style='color:#1acc33'>ED</b>, <b style='color:#d4b000'>ET</b>.</p>"
        )
        for case_id, png in figures:
            parts.append(f"<h3>{html.escape(case_id)}</h3>" + _img_tag(Path(png), f"{case_id} overlays"))
    if notes:
        parts.append(f"<h2>Files and next steps</h2>{notes}")
    parts.append("</body></html>")
    out_html = Path(out_html)
    atomic_write_text(out_html, "\n".join(parts))
    return out_html


def summary_json_text(summary: dict) -> str:
    return json.dumps(summary, indent=2, sort_keys=True)


def print_demo_result(result: dict, itk: str, total: float) -> None:
    """The closing lines ``brats demo`` prints: where its outputs are, and each cohort's Dice (``demo.json``)."""
    print()
    print(f"report:       {result['report']}   (open it in a browser)")
    print(f"predictions:  {result['predictions']}")
    print(f"scores:       {result['evaluation']}/cases.csv, {result['evaluation']}/summary.json")
    print(f"checkpoint:   {result['checkpoint']}")
    for name in ("test", "stress"):
        if f"{name}_dice" not in result:
            continue
        dice = ", ".join(f"{k} {v:.3f}" for k, v in result[f"{name}_dice"].items() if v is not None)
        f1 = result[f"{name}_lesion"]["WT_f1"]
        med = result[f"{name}_wt_median"]
        ci = result.get(f"{name}_wt_ci95")
        spread = (
            f" (means of {result[f'{name}_cases']} cases"
            + ("" if ci is None else f", WT 95 % CI {ci[0]:.3f}-{ci[1]:.3f}")
            + f"; WT median {'-' if med is None else f'{med:.3f}'})"
        )
        label = f"{name} Dice:"
        print(f"{label:<14}{dice}{spread}; lesion-wise WT F1 {'-' if f1 is None else f'{f1:.3f}'}")
    print(f"total time:   {total / 60:.1f} min")
    if itk:
        print(f"view in ITK-SNAP:  {itk}")
