"""A montage of synthetic cases from both profiles, for ``docs/synthetic.md``::

    python -m brats.synth.montage docs/images/synth_profiles.png

One row per case (``train`` profile seed 0, then ``stress`` profile seed 1000): T1, T1ce, T2 and FLAIR through
the slice with most tumour (or the middle slice), then FLAIR with the labels (red NCR, green ED, yellow ET) and the
unlabelled look-alikes outlined (cyan white-matter hyperintensities, magenta vessels and choroid plexus).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from brats.synth.cohort import simulate_case

__all__ = ["montage"]

ROWS = (("train", 0, 0), ("train", 0, 1), ("train", 0, 3), ("stress", 1000, 0), ("stress", 1000, 2))


def montage(path: str | Path, rows=ROWS, shape=None) -> Path:
    """Write the montage PNG to ``path``; ``rows`` are ``(profile, seed, index)``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap

    fig, axes = plt.subplots(len(rows), 5, figsize=(12.5, 2.7 * len(rows)), dpi=72)
    cmap = ListedColormap([(0, 0, 0, 0), (0.9, 0.1, 0.1, 0.5), (0.1, 0.8, 0.2, 0.5), (0.85, 0.7, 0, 0.6)])
    for r, (profile, seed, index) in enumerate(rows):
        case = simulate_case(seed, index, shape, profile=profile)
        seg = np.where(case.seg == 4, 3, case.seg)
        z = int(np.argmax((seg > 0).sum(axis=(0, 1)))) if seg.any() else seg.shape[2] // 2
        for c, key in enumerate(("t1", "t1ce", "t2", "flair")):
            sl = case.images[key][:, :, z]
            axes[r, c].imshow(sl.T / max(float(np.percentile(sl[sl > 0], 99.5)), 1.0), cmap="gray", vmax=1)
            axes[r, c].set_title(f"{profile} {index}: {key}" if c == 0 else key, fontsize=9)
        fl = case.images["flair"][:, :, z]
        axes[r, 4].imshow(fl.T / max(float(np.percentile(fl[fl > 0], 99.5)), 1.0), cmap="gray", vmax=1)
        axes[r, 4].imshow(seg[:, :, z].T, cmap=cmap, vmin=0, vmax=3, interpolation="nearest")
        looks = case.lookalikes
        axes[r, 4].contour(looks["wmh"][:, :, z].T, levels=[0.5], colors="cyan", linewidths=0.6)
        vessels = np.maximum(looks["vessel"], looks["plexus"])[:, :, z].T
        axes[r, 4].contour(vessels, levels=[0.4], colors="magenta", linewidths=0.6)
        axes[r, 4].set_title("labels + look-alikes", fontsize=9)
        for ax in axes[r]:
            ax.set_axis_off()
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out


if __name__ == "__main__":
    print(montage(sys.argv[1] if len(sys.argv) > 1 else "synth_profiles.png"))
