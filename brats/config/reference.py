"""The config reference (``docs/config.md``), generated from the schema's field documentation."""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Iterator
from typing import Any

import yaml

from brats.config.loader import _type_name
from brats.config.schema import Config

__all__ = ["iter_config_fields", "config_reference_markdown"]


def iter_config_fields(cls: type = Config, prefix: str = "") -> Iterator[tuple[str, str, Any, str, bool]]:
    """Yield ``(dotted_key, type_name, default, doc, is_section)`` for every key of the config tree."""
    yield from _iter_with_defaults(cls, prefix, cls())


def _iter_with_defaults(cls: type, prefix: str, obj: Any) -> Iterator[tuple[str, str, Any, str, bool]]:
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        dotted = f"{prefix}.{f.name}" if prefix else f.name
        tp = hints[f.name]
        doc = f.metadata.get("doc", "")
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(tp):
            yield dotted, "section", None, doc, True
            yield from _iter_with_defaults(tp, dotted, value)  # type: ignore[arg-type]
        else:
            yield dotted, _type_name(tp), value, doc, False


def config_reference_markdown() -> str:
    """The config reference (``docs/config.md``), generated from the dataclasses."""
    lines = [
        "# Config reference",
        "",
        "Generated from `brats/config/schema.py` by `brats config-reference > docs/config.md`; do not edit by hand.",
        "Every key can be set in a YAML file or on the command line with `--set key=value`.",
        "",
        "| key | type | default | meaning |",
        "| --- | --- | --- | --- |",
    ]
    for dotted, tname, default, doc, is_section in iter_config_fields():
        if is_section:
            lines.append(f"| **`{dotted}`** | section | | {doc} |")
        else:
            d = "null" if default is None else yaml.safe_dump(default, default_flow_style=True).strip()
            d = d.removesuffix("\n...").removesuffix("...").strip()
            lines.append(f"| `{dotted}` | {tname} | `{d}` | {doc} |")
    return "\n".join(lines) + "\n"
