"""Patient-level split of cases into train / val / test."""

from __future__ import annotations

import re

import numpy as np

from brats.data.naming import Case, is_2023_id

__all__ = ["patient_id", "split_cases"]


_KAGGLE_ID = re.compile(r"^(TCGA_[A-Za-z0-9]+_[A-Za-z0-9]+)_\d{8}$")


def patient_id(case_id: str) -> str:
    """The patient of a case: 2023 ids ``BraTS-GLI-00000-000`` end in a time-point, which is dropped; kaggle_3m
    folders ``TCGA_CS_4941_19960909`` end in a scan date, which is dropped too (``TCGA_CS_4941``)."""
    if is_2023_id(case_id):
        return case_id.rsplit("-", 1)[0]
    m = _KAGGLE_ID.match(case_id)
    return m.group(1) if m else case_id


def split_cases(
    cases: list[Case],
    train_fraction: float = 0.7,
    val_fraction: float = 0.15,
    seed: int = 0,
    fold: int | None = None,
    n_folds: int = 5,
) -> dict[str, list[str]]:
    """Split cases by patient into ``train``/``val``/``test`` (lists of case ids, sorted).

    Cases without a segmentation always go to ``test``. All time-points of a patient land in the same split.
    In k-fold mode (``fold`` set), fold ``fold`` of ``n_folds`` is ``val``, the other labelled patients are
    ``train`` and ``test`` holds only the unlabelled cases.
    """
    labelled = [c for c in cases if c.seg is not None]
    unlabelled = sorted(c.case_id for c in cases if c.seg is None)
    patients = sorted({patient_id(c.case_id) for c in labelled})
    rng = np.random.default_rng(seed)
    order = [patients[i] for i in rng.permutation(len(patients))]
    if fold is not None:
        if not 0 <= fold < n_folds:
            raise ValueError(f"fold must be in 0..{n_folds - 1}, got {fold}")
        val_p = set(order[fold::n_folds])
        train_p = set(order) - val_p

    else:
        n = len(order)
        n_train = int(round(train_fraction * n))
        n_val = int(round(val_fraction * n))
        if n >= 3 and train_fraction < 1:
            n_train = min(max(n_train, 1), n - 2 if val_fraction > 0 else n - 1)
            if val_fraction > 0:
                n_val = max(n_val, 1)
            n_val = min(n_val, n - n_train)
        train_p = set(order[:n_train])
        val_p = set(order[n_train : n_train + n_val])

    out: dict[str, list[str]] = {"train": [], "val": [], "test": list(unlabelled)}
    for c in labelled:
        p = patient_id(c.case_id)
        key = "train" if p in train_p else "val" if p in val_p else "test"
        out[key].append(c.case_id)
    return {k: sorted(v) for k, v in out.items()}
