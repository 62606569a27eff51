"""Two-stage prediction for binary (kaggle_3m) cases: a slice classifier gates the segmenter (docs/lgg.md).

:func:`slice_probabilities` runs a slice classifier (any module mapping ``(B, C, H, W)`` to ``(B,)`` tumour
logits, e.g. the ``SliceClassifier`` of the training package) over the axial slices of a case, normalised and
rescaled exactly as for the segmenter (the checkpoint's settings). :func:`gate_labels` clears the predicted
tumour of every slice whose probability is below the threshold. :func:`predict_gated` does both for one case
and returns the labels; nothing is written.
"""

from __future__ import annotations

import numpy as np
import torch

from brats.data import Case, load_case
from brats.outputs import decode
from brats.predict.postprocess import postprocess_ml
from brats.predict.predictor import PredictSettings, model_grid, predict_probabilities

__all__ = ["slice_probabilities", "gate_labels", "predict_gated"]


@torch.no_grad()
def slice_probabilities(
    classifier: torch.nn.Module,
    image: np.ndarray,
    settings: PredictSettings,
    batch_size: int = 8,
    device: str | torch.device = "cpu",
) -> np.ndarray:
    """``(Z,)`` float32 tumour probability of every axial slice of a normalised ``(C, X, Y, Z)`` image."""
    classifier.eval()
    out = []
    for z0 in range(0, image.shape[-1], batch_size):
        x = torch.as_tensor(np.moveaxis(image[..., z0 : z0 + batch_size], -1, 0)).float().to(device)
        if settings.window_fn is not None:
            x = settings.window_fn(x)
        out.append(torch.sigmoid(classifier(x)).float().cpu().numpy())
    return np.concatenate(out).astype(np.float32) if out else np.zeros(0, np.float32)


def gate_labels(classes: np.ndarray, slice_prob: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """``(X, Y, Z)`` classes with every slice ``z`` where ``slice_prob[z] < threshold`` set to background."""
    if classes.shape[-1] != len(slice_prob):
        raise ValueError(f"{len(slice_prob)} slice probabilities for {classes.shape[-1]} slices")
    out = classes.copy()
    out[..., np.asarray(slice_prob) < threshold] = 0
    return out


def predict_gated(
    model: torch.nn.Module,
    classifier: torch.nn.Module | None,
    case: Case,
    settings: PredictSettings,
    threshold: float = 0.5,
    device: str | torch.device = "cpu",
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Segment one binary case, gated by ``classifier`` when given.

    Returns:
        ``(classes, tumour_prob, slice_prob)``: ``(X, Y, Z)`` uint8 0/1 after gating and post-processing,
        ``(X, Y, Z)`` tumour probability (zeroed on gated-off slices), ``(Z,)`` classifier probabilities or
        None.
    """
    prob, geometry = predict_probabilities(model, case, settings, device)
    classes = decode(prob, settings.output)
    tumour = prob[1].copy()
    slice_prob = None
    if classifier is not None:
        image, grid = load_case(case, settings.modalities)
        norm = settings.normalization
        slice_prob = slice_probabilities(
            classifier, model_grid(norm.apply(image), grid.affine, norm), settings, device=device
        )
        classes = gate_labels(classes, slice_prob, threshold)
        tumour[..., slice_prob < threshold] = 0.0
    if settings.postprocess:
        classes, _ = postprocess_ml(
            classes, geometry.spacing, settings.min_component_ml, settings.et_min_ml, settings.core_min_ml,
            settings.fragment_ml,
        )  # fmt: skip
    return classes, tumour, slice_prob
