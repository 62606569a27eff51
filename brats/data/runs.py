"""The cases of one split of a run: ``RUN_DIR/splits.json`` (written by ``brats extract``) and its data root.

``brats predict --run RUN_DIR --split test`` and ``brats evaluate --run RUN_DIR --split test`` read exactly the
cases ``splits.json`` lists under that split, from the data root it records (``"root"``), so a test split is never
mixed with training data by pointing a command at the whole data folder.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from brats.data.naming import Case, CaseError, discover_cases

__all__ = ["SPLITS", "read_splits", "split_root", "run_split_cases"]

#: The splits ``splits.json`` holds.
SPLITS: tuple[str, ...] = ("train", "val", "test")


def read_splits(run_dir: str | Path) -> dict[str, Any]:
    """``RUN_DIR/splits.json`` as a dict (``train``, ``val``, ``test`` lists of case ids, ``root``, ...).

    Raises:
        CaseError: the file is missing, not JSON, or lacks a split list or the data root.
    """
    path = Path(run_dir) / "splits.json"
    if not path.is_file():
        raise CaseError(f"{path}: not found (run `brats extract` for this run first)")
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise CaseError(f"{path}: cannot read ({exc})") from exc
    if not isinstance(doc, dict):
        raise CaseError(f"{path}: expected a JSON object")
    for key in SPLITS:
        if not isinstance(doc.get(key), list):
            raise CaseError(f"{path}: key {key!r} missing or not a list of case ids")
    if not isinstance(doc.get("root"), str):
        raise CaseError(f"{path}: key 'root' (the data root) missing")
    return doc


def split_root(run_dir: str | Path, data_root: str | Path | None = None) -> Path:
    """The data root of a run: ``data_root`` if given, else ``splits.json``'s ``root`` (relative paths are taken
    from the current folder, as ``brats extract`` read them, else from the run folder's parent).

    Raises:
        CaseError: the folder does not exist (the message suggests ``--data-root``).
    """
    if data_root is not None:
        root = Path(data_root)
        if not root.is_dir():
            raise CaseError(f"--data-root {root}: folder not found")
        return root
    recorded = Path(read_splits(run_dir)["root"])
    candidates = [recorded] if recorded.is_absolute() else [recorded, Path(run_dir).parent / recorded]
    for root in candidates:
        if root.is_dir():
            return root
    raise CaseError(
        f"{Path(run_dir) / 'splits.json'}: data root {str(recorded)!r} not found from {Path.cwd()}; "
        "run from the folder where `brats extract` ran, or pass --data-root"
    )


def run_split_cases(
    run_dir: str | Path,
    split: str,
    naming: str = "auto",
    pattern: str | None = None,
    data_root: str | Path | None = None,
) -> tuple[Path, list[Case]]:
    """``(data root, cases)``: exactly the cases of ``split`` in ``RUN_DIR/splits.json``, sorted by id.

    Raises:
        CaseError: unknown split, an empty split, or a listed case not found under the data root.
    """
    if split not in SPLITS:
        raise CaseError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    ids = list(read_splits(run_dir)[split])
    where = Path(run_dir) / "splits.json"
    if not ids:
        raise CaseError(f"{where}: the {split} split is empty")
    root = split_root(run_dir, data_root)
    found = {c.case_id: c for c in discover_cases(root, naming, pattern)}
    lacking = [cid for cid in ids if cid not in found]
    if lacking:
        shown = ", ".join(lacking[:10]) + (f" ... ({len(lacking)} in all)" if len(lacking) > 10 else "")
        raise CaseError(f"{where}: {split} case(s) not found under {root}: {shown}")
    return root, [found[cid] for cid in sorted(ids)]
