"""Learning-rate schedules of the training engine (``train.scheduler.name``).

``plateau`` is :class:`torch.optim.lr_scheduler.ReduceLROnPlateau` on the validation loss (built by the engine).
``cosine`` anneals the learning rate from ``train.lr`` to ``train.scheduler.min_lr`` along half a cosine over the
*run's progress*: the larger of the fraction of steps done (``train.epochs`` x steps per epoch) and the fraction
of the time budget spent (``train.max_minutes``, counting the seconds of epochs before a resume). A run cut short
by its time budget therefore still ends at a low learning rate, whatever the speed of the machine.
``train.scheduler.warmup_steps`` (``cosine`` only) multiplies the rate of step ``i`` (0-based) by
``(i + 1) / warmup_steps`` while ``i < warmup_steps``: a linear warm-up over the first steps.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["anneal", "cosine_lr", "run_progress"]


def cosine_lr(base_lr: float, min_lr: float, progress: float) -> float:
    """``min_lr + (base_lr - min_lr) * (1 + cos(pi * progress)) / 2`` with ``progress`` clipped to [0, 1]."""
    p = min(max(float(progress), 0.0), 1.0)
    return min_lr + (base_lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * p))


def run_progress(steps_done: int, total_steps: int, seconds: float, budget_seconds: float | None) -> float:
    """The fraction of the run done: the larger of ``steps_done / total_steps`` and ``seconds / budget_seconds``
    (the latter only with a budget), clipped to [0, 1]."""
    frac = steps_done / total_steps if total_steps > 0 else 1.0
    if budget_seconds is not None:
        frac = max(frac, seconds / budget_seconds if budget_seconds > 0 else 1.0)
    return min(max(frac, 0.0), 1.0)


def anneal(optimizer: Any, train_cfg: Any, steps_done: int, steps_per_epoch: int, seconds: float) -> float:
    """Set every parameter group of ``optimizer`` to the ``cosine`` learning rate after ``steps_done`` steps and
    ``seconds`` of training (``train_cfg``: the ``train`` section); returns it."""
    budget = None if train_cfg.max_minutes is None else 60.0 * train_cfg.max_minutes
    done = run_progress(steps_done, train_cfg.epochs * steps_per_epoch, seconds, budget)
    lr = cosine_lr(train_cfg.lr, train_cfg.scheduler.min_lr, done)
    warmup = train_cfg.scheduler.warmup_steps
    if steps_done < warmup:
        lr *= (steps_done + 1) / warmup
    for group in optimizer.param_groups:
        group["lr"] = lr
    return lr
