"""What a network's output channels mean (``model.output``): softmax classes or sigmoid BraTS regions.

* ``classes`` (default): ``K`` logits, one per training class (4 for BraTS: background, NCR, ED, ET; 2 for
  ``binary``); probabilities are their softmax and the label is the argmax.
* ``regions`` (BraTS schemes only): 3 logits, one per nested region ``WT = NCR | ED | ET``, ``TC = NCR | ET``
  and ``ET``, each an independent sigmoid, as nnU-Net trains BraTS ("region-based training"). The loss sees
  the three binary region masks. Labels are decoded as nnU-Net does: every voxel starts as background, then
  ``WT >= 0.5`` sets ED, ``TC >= 0.5`` sets NCR and ``ET >= 0.5`` sets ET, each overwriting the one before.

A ``classes`` model can also be decoded by the region rule (``decode="regions"``, BraTS schemes): its softmax
gives ``WT = 1 - p(background)``, ``TC = p(NCR) + p(ET)`` and ``ET = p(ET)``, thresholded as above. A voxel whose
tumour probability is split between classes (background 0.4, edema 0.35, NCR 0.25) is then tumour, where the
argmax calls it background.

Prediction always produces 4 channels, so blending, flip TTA and the background fill outside the brain
(channel 0 = 1, the rest 0) are the same in both modes: for ``classes`` they are the class probabilities; for
``regions`` they are ``(1 - WT, WT, TC, ET)``. Averaging over windows and flips is linear, so channel 0 stays
``1 - WT`` throughout; :func:`decode` turns either layout into training classes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from brats.labels import REGION_CLASSES, REGION_NAMES, LabelError, LabelScheme

__all__ = [
    "OUTPUTS",
    "DECODE_RULES",
    "out_channels",
    "region_targets",
    "probabilities",
    "decode",
    "decode_logits",
    "region_threshold_problem",
]

OUTPUTS = ("classes", "regions")
#: How a ``classes`` model's probabilities become labels: the argmax, or the nested region thresholds.
DECODE_RULES = ("argmax", "regions")
#: Training class each region sets when decoding, in nnU-Net's overwrite order (WT -> ED, TC -> NCR, ET -> ET).
_REGION_LABEL = {"WT": 2, "TC": 1, "ET": 3}


def out_channels(output: str, scheme: LabelScheme) -> int:
    """Output channels of the network: the scheme's classes, or 3 regions.

    Raises:
        LabelError: an unknown ``output``, or ``regions`` with the ``binary`` scheme (it has one structure).
    """
    if output == "classes":
        return scheme.num_classes
    if output == "regions":
        if scheme.is_binary:
            raise LabelError(
                f"model.output=regions needs a BraTS label scheme, got {scheme.name!r}; use model.output=classes"
            )
        return len(REGION_NAMES)
    raise LabelError(f"model.output must be one of {', '.join(OUTPUTS)}, got {output!r}")


def region_targets(target: torch.Tensor) -> torch.Tensor:
    """Training classes ``(B, *spatial)`` -> float region masks ``(B, 3, *spatial)`` in the order WT, TC, ET."""
    masks = [torch.isin(target, torch.tensor(REGION_CLASSES[r], device=target.device)) for r in REGION_NAMES]
    return torch.stack(masks, dim=1).float()


def probabilities(logits: torch.Tensor, output: str) -> torch.Tensor:
    """Logits ``(B, K, ...)`` -> float32 4-channel (``classes``: ``K``-channel) probabilities (module doc)."""
    logits = logits.float()
    if output == "classes":
        return torch.softmax(logits, dim=1)
    regions = torch.sigmoid(logits)
    return torch.cat([1.0 - regions[:, :1], regions], dim=1)


def region_threshold_problem(thresholds: Sequence[float]) -> str | None:
    """What is wrong with the region rule's WT, TC and ET ``thresholds`` (3 values in (0, 1]), or None."""
    values = [float(t) for t in thresholds]
    if len(values) != 3 or not all(0 < v <= 1 for v in values):  # also refuses NaN
        return f"region_thresholds must be 3 values in (0, 1] (WT, TC, ET), got {values}"
    return None


def decode(
    prob: np.ndarray,
    output: str,
    axis: int = 0,
    rule: str = "argmax",
    thresholds: tuple[float, float, float] = (0.5, 0.5, 0.5),
) -> np.ndarray:
    """Training classes (uint8) from :func:`probabilities` stacked along ``axis`` (the module doc's rules).

    ``rule`` applies to ``classes`` outputs: ``argmax``, or ``regions`` (4 BraTS classes only); ``regions``
    outputs always use the region thresholds. ``thresholds``: the probabilities at or above which a voxel is in
    WT, TC and ET (region rule only; 0.5 each by default, as nnU-Net).

    Raises:
        LabelError: an unknown ``rule``, ``regions`` on probabilities that are not 4 BraTS classes, or a
            threshold outside (0, 1].
    """
    if rule not in DECODE_RULES:
        raise LabelError(f"decode must be one of {', '.join(DECODE_RULES)}, got {rule!r}")
    problem = region_threshold_problem(thresholds)
    if problem:
        raise LabelError(problem)
    prob = np.moveaxis(np.asarray(prob), axis, 0)
    if output == "classes" and rule == "argmax":
        return prob.argmax(axis=0).astype(np.uint8)
    if output == "classes":
        if prob.shape[0] != 4:
            raise LabelError(f"decode=regions needs the 4 BraTS classes, got {prob.shape[0]} channels")
        regions = (1.0 - prob[0], prob[1] + prob[3], prob[3])  # WT, TC, ET
    else:
        regions = (prob[1], prob[2], prob[3])
    classes = np.zeros(prob.shape[1:], np.uint8)
    for region, name, threshold in zip(regions, REGION_NAMES, thresholds):
        classes[region >= threshold] = _REGION_LABEL[name]
    return classes


def decode_logits(logits: torch.Tensor, output: str) -> torch.Tensor:
    """Training classes ``(B, ...)`` int64 from logits ``(B, K, ...)`` (validation during training)."""
    if output == "classes":
        return logits.argmax(1)
    return torch.from_numpy(
        decode(probabilities(logits.detach(), output).cpu().numpy(), output, axis=1)
    ).long()
