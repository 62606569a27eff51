"""Config field helpers shared by the schema modules: :class:`ConfigError` and the documented field ``_f``."""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import field
from typing import Any

from brats.errors import BratsError

__all__ = ["RANGE_KEYS", "ConfigError"]


class ConfigError(BratsError, ValueError):
    """A config file or override is invalid. The message names the key and the source."""


#: Range bounds a field may declare: ``ge`` (>=), ``gt`` (>), ``le`` (<=), ``lt`` (<).
RANGE_KEYS = ("ge", "gt", "le", "lt")


def _f(
    default: Any,
    doc: str,
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    **kw: Any,
) -> Any:
    """A dataclass field with a documentation string (``metadata['doc']``) and an optional range.

    ``ge``/``gt``/``le``/``lt`` bound a number (or every number of a list); the loader checks them and names the
    key in the error (``null`` for an optional field is always allowed).
    """
    bounds = {"ge": ge, "gt": gt, "le": le, "lt": lt}
    meta: dict[str, Any] = {"doc": doc} | {k: v for k, v in bounds.items() if v is not None}
    if isinstance(default, (list, dict)) or dataclasses.is_dataclass(default):
        value = default
        return field(default_factory=lambda: copy.deepcopy(value), metadata=meta, **kw)
    return field(default=default, metadata=meta, **kw)
