"""Training logs: ``metrics.csv`` (one row per epoch) and ``curves.png``, both written atomically.

Columns of ``metrics.csv``: ``epoch`` (1-based), ``train_loss``, ``val_loss``, ``val_dice_NCR``,
``val_dice_ED``, ``val_dice_ET`` (Dice of each training class pooled over all validation patches, empty rule
``brats``), ``val_dice_mean`` (their mean), ``val_dice_WT``, ``val_dice_TC`` (the BraTS regions, pooled the
same way; empty for the binary scheme), ``lr`` (learning rate during the epoch), ``seconds`` (wall time of
the epoch, training and validation). The validation columns are empty in the rows of epochs that were not
validated (``train.val_every``).
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from pathlib import Path

from brats.fs import atomic_path, atomic_write_text

__all__ = ["METRIC_COLUMNS", "metric_mode", "write_metrics_csv", "read_metrics_csv", "plot_curves"]

METRIC_COLUMNS: tuple[str, ...] = (
    "epoch",
    "train_loss",
    "val_loss",
    "val_dice_NCR",
    "val_dice_ED",
    "val_dice_ET",
    "val_dice_mean",
    "val_dice_WT",
    "val_dice_TC",
    "lr",
    "seconds",
)


def metric_mode(name: str) -> str:
    """``"min"`` for a loss column, ``"max"`` for a Dice column and for ``epoch`` (every epoch is better than the
    last: ``best.pt`` is the final epoch's weights); raises ``ValueError`` for anything else."""
    if name in ("val_loss", "train_loss"):
        return "min"
    if name == "epoch" or (name.startswith("val_dice_") and name in METRIC_COLUMNS):
        return "max"
    valid = [c for c in METRIC_COLUMNS if c == "epoch" or c.endswith("loss") or c.startswith("val_dice")]
    raise ValueError(f"train.best_metric must be one of {', '.join(valid)}, got {name!r}")


def write_metrics_csv(rows: Sequence[dict], path: str | Path) -> Path:
    """Write all epoch rows (dicts keyed by :data:`METRIC_COLUMNS`) to ``path``."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(METRIC_COLUMNS), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _fmt(row.get(k)) for k in METRIC_COLUMNS})
    return atomic_write_text(path, buf.getvalue())


def _fmt(value: object) -> object:
    if isinstance(value, float):
        return f"{value:.6g}"
    return value


def read_metrics_csv(path: str | Path) -> list[dict]:
    """The rows of a ``metrics.csv`` (numbers as float, ``epoch`` as int)."""
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    out = []
    for row in rows:
        out.append({k: (int(v) if k == "epoch" else float(v)) for k, v in row.items() if v not in (None, "")})
    return out


def plot_curves(rows: Sequence[dict], path: str | Path) -> Path:
    """Plot losses, validation Dice per class and the learning rate per epoch to ``path`` (PNG, Agg)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in rows]

    def series(key: str) -> tuple[list[int], list[float]]:  # the epochs that have ``key`` (validated ones)
        have = [r for r in rows if r.get(key) is not None]
        return [r["epoch"] for r in have], [float(r[key]) for r in have]

    fig, (ax_loss, ax_dice) = plt.subplots(1, 2, figsize=(10, 3.8))
    for key, style in (("train_loss", "o-"), ("val_loss", "s-")):
        ax_loss.plot(*series(key), style, label=key.replace("_", " "))
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("loss")
    ax_loss.set_yscale("log")
    ax_lr = ax_loss.twinx()
    ax_lr.plot(epochs, [r.get("lr", math.nan) for r in rows], "k:", label="lr")
    ax_lr.set_ylabel("learning rate")
    ax_lr.set_yscale("log")
    lines = ax_loss.get_legend_handles_labels()
    lr_lines = ax_lr.get_legend_handles_labels()
    ax_loss.legend(lines[0] + lr_lines[0], lines[1] + lr_lines[1], loc="upper right", fontsize=8)
    ax_loss.set_title("loss")
    for key in ("val_dice_NCR", "val_dice_ED", "val_dice_ET", "val_dice_mean", "val_dice_WT", "val_dice_TC"):
        style = "x--" if key in ("val_dice_WT", "val_dice_TC") else "o-"
        ax_dice.plot(*series(key), style, label=key.removeprefix("val_dice_"))
    ax_dice.set_xlabel("epoch")
    ax_dice.set_ylabel("validation Dice")
    ax_dice.set_ylim(0, 1)
    ax_dice.legend(loc="lower right", fontsize=8)
    ax_dice.set_title("validation Dice per class and region")
    for ax in (ax_loss, ax_dice):
        ax.grid(alpha=0.3)
        if len(epochs) < 15:
            ax.set_xticks(epochs)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)
    return path
