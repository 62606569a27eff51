"""brats: 3D brain-tumour segmentation on multimodal MRI (BraTS).

Stages (one module each): :mod:`brats.io` (read, validate, split), :mod:`brats.synth` (synthetic cohort),
:mod:`brats.preprocess` and :mod:`brats.patches` (extract to HDF5), :mod:`brats.data`, :mod:`brats.augment`,
:mod:`brats.model` and :mod:`brats.train` (train), :mod:`brats.infer` (predict), :mod:`brats.metrics` (evaluate).
"""

__version__ = "0.1.0"
