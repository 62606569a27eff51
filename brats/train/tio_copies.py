"""Whether the transforms inside a TorchIO pipeline deep-copy their input (:func:`set_copies`)."""

from __future__ import annotations

import torchio as tio

__all__ = ["SHARE_SUBJECTS", "set_copies"]


#: Whether the pipeline's transforms share the Compose's copy (:func:`set_copies`). TorchIO 0.22, the oldest
#: supported, misaligns labels and images in a OneOf whose transforms do not copy (tests/test_augment.py in the
#: minimum-version suite), so there every transform keeps TorchIO's default copy.
SHARE_SUBJECTS = int(tio.__version__.split(".")[0]) >= 1


def set_copies(pipeline: tio.Compose, copy: bool) -> None:
    """Set whether every transform inside ``pipeline`` (and inside its OneOfs and Composes) deep-copies its input.

    Every TorchIO transform deep-copies its input by default (``copy=True``). Inside a Compose, which copies once
    on entry, those copies only cost time (``torchio_copy_each`` against ``torchio`` in ``augment_by_warp`` of
    ``python bench/train.py --augment 400``), so :func:`build_transform` sets them off (``copy=False``; the
    output is the same, tested). ``pipeline`` itself keeps its copy: the caller's subject is never modified.
    ``set_copies(pipeline, True)`` restores TorchIO's default, as a user who keeps it would run the pipeline.
    """
    children = getattr(pipeline, "transforms_dict", None) or getattr(pipeline, "transforms", [])
    for child in children:
        child.copy = copy
        set_copies(child, copy)
