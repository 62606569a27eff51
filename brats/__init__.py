"""brats: 3D brain-tumour segmentation on multimodal MRI (BraTS).

One subpackage per stage, named after its command: :mod:`brats.synth`, :mod:`brats.extract`, :mod:`brats.train`,
:mod:`brats.predict`, :mod:`brats.evaluate`; foundations below them: :mod:`brats.config`, :mod:`brats.labels`,
:mod:`brats.data` (read, validate, split), :mod:`brats.fs`, :mod:`brats.preprocess`, :mod:`brats.checkpoint`,
:mod:`brats.networks`; on top: :mod:`brats.demo`, :mod:`brats.report`, :mod:`brats.cli`. See docs/architecture.md.
"""

__version__ = "0.1.0"
