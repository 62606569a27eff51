"""``brats extract``: normalise cases and write patches (2D / 3D windows) to HDF5 stores.

Modules: :mod:`~brats.extract.windows` (window geometry and selection), :mod:`~brats.extract.store` (the HDF5
store format, writer and readers), :mod:`~brats.extract.context` (2.5D slice stacks), :mod:`~brats.extract.patches` (per-case extraction, the split, the run).
"""

from brats.extract.context import (
    context_channels,
    stack_context,
)
from brats.extract.patches import (
    CasePatches,
    extract_case,
    run_extract,
    store_attrs,
)
from brats.extract.store import (
    ATTRS,
    FORMAT,
    StoreError,
    StoreWriter,
    open_store,
    read_store,
    read_store_info,
)
from brats.extract.windows import (
    case_rng,
    cut_patches,
    select_windows,
    window_grid,
    window_starts,
    window_sums,
)

__all__ = [
    "ATTRS",
    "CasePatches",
    "FORMAT",
    "StoreError",
    "StoreWriter",
    "case_rng",
    "context_channels",
    "cut_patches",
    "extract_case",
    "open_store",
    "read_store",
    "read_store_info",
    "run_extract",
    "select_windows",
    "stack_context",
    "store_attrs",
    "window_grid",
    "window_starts",
    "window_sums",
]
