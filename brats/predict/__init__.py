"""``brats predict``: sliding-window inference over whole cases, post-processing, NIfTI export on the input grid.

Modules: :mod:`~brats.predict.sliding` (windows, blending, TTA), :mod:`~brats.predict.postprocess`
(connected components, coreless components, the ET rule), :mod:`~brats.predict.predictor` (checkpoint -> settings -> cases -> files),
:mod:`~brats.predict.gate` (two-stage LGG: a slice classifier gates the segmenter). The post-processing thresholds
are chosen on the validation split by :func:`brats.evaluate.tune_postprocess` (it predicts and scores).
"""

from brats.predict.postprocess import (
    ml_to_voxels,
    postprocess,
    postprocess_ml,
    remove_coreless_components,
    remove_fragments,
    remove_small_components,
    suppress_small_et,
    tumour_components,
)
from brats.predict.predictor import (
    PredictSettings,
    load_predictor,
    predict_case,
    predict_probabilities,
    run_predict,
)
from brats.predict.sliding import (
    BLEND_MODES,
    InferenceError,
    fit_window,
    flip_combinations,
    make_predictor,
    num_windows,
    predict_volume,
    window_layout,
)

__all__ = [
    "BLEND_MODES",
    "InferenceError",
    "PredictSettings",
    "fit_window",
    "flip_combinations",
    "load_predictor",
    "make_predictor",
    "ml_to_voxels",
    "num_windows",
    "postprocess",
    "postprocess_ml",
    "predict_case",
    "predict_probabilities",
    "predict_volume",
    "remove_coreless_components",
    "remove_fragments",
    "remove_small_components",
    "run_predict",
    "suppress_small_et",
    "tumour_components",
    "window_layout",
]
