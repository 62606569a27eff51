"""``brats train``: dataset over a patch store, TorchIO pipelines, losses, the training engine and its logs.

Modules: :mod:`~brats.train.dataset`, :mod:`~brats.train.augment` (2D), :mod:`~brats.train.augment3d` (3D),
:mod:`~brats.train.losses`, :mod:`~brats.train.runtime` (devices, AMP, seeding, DDP, loaders),
:mod:`~brats.train.engine` (the loop), :mod:`~brats.train.log` (metrics.csv, curves),
:mod:`~brats.train.classifier` (the LGG slice classifier). The network factory shared with prediction is
:mod:`brats.networks`; checkpoints are :mod:`brats.checkpoint`.
"""

from brats.train.augment import (
    AugmentError,
    ChannelwiseRescaleIntensity,
    PatchTransform,
    build_transform,
    intensity_transforms,
    spatial_transforms,
)
from brats.train.augment3d import (
    PatchTransform3D,
    build_transform_3d,
    spatial_transforms_3d,
)
from brats.train.dataset import (
    PatchDataset,
)
from brats.train.engine import (
    Trainer,
    run_training,
)
from brats.train.log import (
    METRIC_COLUMNS,
    metric_mode,
    plot_curves,
    read_metrics_csv,
    write_metrics_csv,
)
from brats.train.losses import (
    LossError,
    SegmentationLoss,
    build_loss,
)
from brats.train.runtime import (
    Runtime,
    TrainError,
    check_stores,
    epoch_seed,
    init_distributed,
    resolve_amp,
    rng_state,
    seed_everything,
    set_rng_state,
    train_loader,
    val_loader,
)

__all__ = [
    "AugmentError",
    "ChannelwiseRescaleIntensity",
    "LossError",
    "METRIC_COLUMNS",
    "PatchDataset",
    "PatchTransform",
    "PatchTransform3D",
    "Runtime",
    "SegmentationLoss",
    "TrainError",
    "Trainer",
    "build_loss",
    "build_transform",
    "build_transform_3d",
    "check_stores",
    "epoch_seed",
    "init_distributed",
    "intensity_transforms",
    "metric_mode",
    "plot_curves",
    "read_metrics_csv",
    "resolve_amp",
    "rng_state",
    "run_training",
    "seed_everything",
    "set_rng_state",
    "spatial_transforms",
    "spatial_transforms_3d",
    "train_loader",
    "val_loader",
    "write_metrics_csv",
]
