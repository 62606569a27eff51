"""The training engine: smp model, focal loss, Adam, lr schedule, AMP, checkpoints, resume, DDP.

:func:`run_training` reads ``OUTPUT_DIR/patches/{train,val}.h5`` and writes under ``OUTPUT_DIR``:

* ``config.yaml``: the resolved config;
* ``metrics.csv`` and ``curves.png``: one row / point per epoch (:mod:`brats.train.log`);
* ``checkpoints/last.pt`` (every epoch) and ``checkpoints/best.pt`` (best ``train.best_metric``), written
  atomically, holding everything :func:`brats.networks.model_from_checkpoint` and resuming need.

Each epoch trains on the augmented train store (one pass, or ``train.steps_per_epoch`` batches), then scores
the validation store (loss and Dice per training class; with ``train.val_every`` = n only after every n-th
epoch and the run's last, other rows leaving the validation columns empty), steps a ``plateau`` scheduler on the
validation loss (``cosine`` anneals every step: :mod:`brats.train.schedule`) and writes the logs and checkpoints.
Until a first validation, ``best.pt`` is the latest epoch's weights.
``train.max_minutes`` is a budget checked after every step, validation included.

Mixed precision (``train.amp``): ``auto`` = float16 autocast + GradScaler on CUDA; on CPU bf16 when a short probe
measures it faster than float32 (``amp_probe.json`` in the run folder says what was chosen and why); ``bf16``;
``fp16``; ``off``. The loss is always computed in float32. Under ``torchrun`` (``WORLD_SIZE`` > 1) the model is
wrapped in DistributedDataParallel, each rank trains on its share of every epoch, validation counts are
summed over ranks, and only rank 0 writes files.
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from brats.checkpoint import Checkpoint, write_checkpoint
from brats.config import Config, config_to_dict, save_config
from brats.evaluate.metrics import confusion_matrix, pooled_dice
from brats.fs import atomic_write_text
from brats.labels import get_scheme
from brats.networks import build_model
from brats.outputs import decode_logits, out_channels
from brats.train.augment import build_transform
from brats.train.augment3d import build_transform_3d
from brats.train.batch_augment import build_batch_augment
from brats.train.dataset import PatchDataset
from brats.train.deep_supervision import deep_supervised
from brats.train.log import metric_mode, plot_curves, write_metrics_csv
from brats.train.losses import build_loss
from brats.train.resume import restore, trainer_checkpoint
from brats.train.runtime import (
    Runtime,
    TrainError,
    check_stores,
    epoch_seed,
    init_distributed,
    probe_amp,
    seed_everything,
    train_loader,
    val_loader,
)
from brats.train.sampling import sample_weights
from brats.train.schedule import anneal, run_progress
from brats.train.swa import averaged_steps, build_average
from brats.train.tumour_paste import build_paste

__all__ = ["Trainer", "run_training"]

log = logging.getLogger(__name__)


def run_training(cfg: Config, resume: bool = False, progress: bool = False) -> dict[str, Any]:
    """Train ``cfg`` (see the module doc); ``resume`` continues from ``OUTPUT_DIR/checkpoints/last.pt``.

    Returns:
        ``output_dir``, ``metrics``, ``curves``, ``config``, ``last``, ``best`` (paths), ``epochs_run`` (in
        this call), ``epoch`` (epochs completed in total), ``best_metric``, ``best_score``, ``stopped_early``
        (the time budget ended the run), ``seconds``.

    Raises:
        TrainError: missing or inconsistent stores, missing checkpoint on resume, a non-finite loss.
    """
    trainer = Trainer(cfg, resume=resume, progress=progress)
    try:
        return trainer.fit()
    finally:
        trainer.close()


class Trainer:
    """One training run; :meth:`fit` runs the remaining epochs. See the module doc."""

    def __init__(self, cfg: Config, resume: bool = False, progress: bool = False):
        self.cfg, self.progress = cfg, progress
        tc = cfg.train
        out = Path(cfg.output_dir)
        self.paths = {
            "output_dir": out,
            "metrics": out / "metrics.csv",
            "curves": out / "curves.png",
            "config": out / "config.yaml",
            "last": out / "checkpoints" / "last.pt",
            "best": out / "checkpoints" / "best.pt",
        }
        try:
            self.best_mode = metric_mode(tc.best_metric)
        except ValueError as exc:
            raise TrainError(str(exc)) from exc
        if tc.num_threads:
            torch.set_num_threads(int(tc.num_threads))
        self.info = check_stores(cfg, out / "patches")
        self.rt: Runtime = init_distributed(tc)
        self.scheme = get_scheme(self.info["label_scheme"])
        build = build_transform_3d if cfg.patches.dim == 3 else build_transform
        # augment.engine=batch: raw samples, augmented a batch at a time in the loader (brats/train/batch_augment.py)
        self.collate = build_batch_augment(cfg, self.scheme) if cfg.augment.engine == "batch" else None
        train_tf = None if self.collate is not None else build(cfg, "train", self.scheme)
        # augment.tumour_paste: a store tumour pasted into tumour-free patches (brats/train/tumour_paste.py)
        paste = build_paste(cfg, out / "patches" / "train.h5")
        self.train_ds = PatchDataset(out / "patches" / "train.h5", train_tf, paste=paste)
        self.val_ds = PatchDataset(out / "patches" / "val.h5", build(cfg, "val", self.scheme))
        try:  # None (uniform permutations) unless train.core_oversample or train.case_balance is set
            self.sample_weights = sample_weights(
                self.train_ds.path, self.scheme, tc.core_oversample, tc.case_balance
            )
        except ValueError as exc:
            raise TrainError(str(exc)) from exc
        # modalities x (2k + 1) for 2.5D stores (patches.context_slices: k)
        self.in_channels = int(self.info["image_shape"][0])
        self.memory_format = torch.channels_last_3d if cfg.patches.dim == 3 else torch.channels_last
        seed_everything(cfg.seed)
        self.num_classes = self.scheme.num_classes  # 4 for BraTS, 2 for the binary (kaggle_3m) scheme
        self.out_channels = out_channels(cfg.model.output, self.scheme)  # the classes, or 3 regions
        self.model = build_model(cfg.model, self.in_channels, self.out_channels, cfg.patches.dim).to(
            self.rt.device
        )
        if tc.channels_last:
            self.model = self.model.to(memory_format=self.memory_format)
        self.average = build_average(self.model, tc.swa_start)  # None unless train.swa_start is set
        self.loss_fn = build_loss(cfg.loss, cfg.model.output == "regions", self.out_channels).to(
            self.rt.device
        )
        # loss.deep_supervision: heads on the decoder's stages, trained beside it (brats/train/deep_supervision.py)
        self.train_net, self.train_loss = deep_supervised(self.model, cfg, self.out_channels, self.loss_fn)
        params = [p for p in self.train_net.parameters() if p.requires_grad]
        self.optimizer = torch.optim.Adam(params, lr=tc.lr, weight_decay=tc.weight_decay)
        sc = tc.scheduler
        self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            self.optimizer, mode="min", factor=sc.factor, patience=sc.patience, min_lr=sc.min_lr
        )
        self.scaler = torch.amp.GradScaler(self.rt.device.type, enabled=self.rt.use_scaler)
        shape = (tc.batch_size, self.in_channels, *cfg.patches.size)
        model_loss = {"model": config_to_dict(cfg.model), "loss": config_to_dict(cfg.loss)}
        what = model_loss | {"input": list(shape), "cl": tc.channels_last}
        self.amp_probe = probe_amp(tc, self.rt, self.model, self.loss_fn, shape, what)
        self.epoch = 0
        self._clock = (time.monotonic(), 0.0)  # (fit's start, training seconds before it): set by fit
        self.best_score: float | None = None
        self.history: list[dict[str, float]] = []
        if resume:
            restore(self, self.paths["last"])
        self.net: nn.Module = self.train_net
        if self.rt.distributed:
            ids = [self.rt.device] if self.rt.device.type == "cuda" else None
            self.net = nn.parallel.DistributedDataParallel(self.train_net, device_ids=ids)

    # -- set-up -----------------------------------------------------------------------------------------------

    def checkpoint(self) -> Checkpoint:
        """The checkpoint of the current state (:func:`brats.train.resume.trainer_checkpoint`)."""
        return trainer_checkpoint(self)

    # -- loop -------------------------------------------------------------------------------------------------

    def fit(self) -> dict[str, Any]:
        """Run epochs ``self.epoch + 1 .. train.epochs``; returns the summary of :func:`run_training`."""
        cfg, tc, rt = self.cfg, self.cfg.train, self.rt
        start = time.monotonic()
        if rt.is_main:
            save_config(cfg, self.paths["config"])
            if self.amp_probe is not None:  # what train.amp=auto chose on this machine, and why
                atomic_write_text(
                    self.paths["output_dir"] / "amp_probe.json", json.dumps(self.amp_probe, indent=1)
                )
        if self.epoch >= tc.epochs:
            log.warning("nothing to do: %d epochs already completed (train.epochs=%d)", self.epoch, tc.epochs)
        first, stopped, val_seconds = self.epoch, False, 0.0
        self._clock = (start, sum(float(r.get("seconds", 0.0)) for r in self.history))  # resumed runs' time
        while self.epoch < tc.epochs and not stopped:
            t0 = time.monotonic()
            epoch = self.epoch
            lr = float(self.optimizer.param_groups[0]["lr"])
            seed_everything(epoch_seed(cfg.seed, epoch, 0, rt.rank))
            # the budget covers validation too: stop stepping early enough to validate within it
            deadline = None if tc.max_minutes is None else start + 60 * tc.max_minutes - val_seconds
            train_loss, over = self.train_epoch(epoch, deadline)
            val: dict[str, float] = {}
            if over or epoch + 1 >= tc.epochs or (epoch + 1) % tc.val_every == 0:
                t_val = time.monotonic()
                val = self.validate()
                val_seconds = time.monotonic() - t_val
                if tc.scheduler.name == "plateau":
                    self.scheduler.step(val["val_loss"])
            row = {
                "epoch": epoch + 1,
                "train_loss": train_loss,
                **val,
                "lr": lr,
                "seconds": time.monotonic() - t0,
            }
            self.history.append(row)
            self.epoch = epoch + 1
            improved = self._update_best(row.get(tc.best_metric, math.nan))
            if rt.is_main:
                self._write(improved)
            dice = " ".join(f"{k[9:]} {v:.3f}" for k, v in val.items() if k.startswith("val_dice_"))
            checked = f"val loss {val['val_loss']:.4f}, val Dice {dice}" if val else "not validated"
            log.log(
                logging.INFO if rt.is_main else logging.DEBUG,
                "epoch %d/%d: train loss %.4f, %s, %.1f s",
                self.epoch, tc.epochs, train_loss, checked, row["seconds"],
            )  # fmt: skip
            stopped = over and self.epoch < tc.epochs
            if stopped:
                log.info("train.max_minutes=%s reached in epoch %d", tc.max_minutes, self.epoch)
        if rt.distributed:
            dist.barrier()
        return {
            **{k: str(v) for k, v in self.paths.items()},
            "epochs_run": self.epoch - first,
            "epoch": self.epoch,
            "best_metric": tc.best_metric,
            "best_score": self.best_score,
            "stopped_early": stopped,
            "seconds": round(time.monotonic() - start, 2),
        }

    def _autocast(self):
        dtype = self.rt.amp_dtype
        return torch.autocast(self.rt.device.type, dtype=dtype, enabled=dtype is not None)

    def _batch(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        x = batch["image"].to(self.rt.device, non_blocking=True)
        if self.cfg.train.channels_last:
            x = x.contiguous(memory_format=self.memory_format)
        return x, batch["label"].to(self.rt.device, non_blocking=True)

    def train_epoch(self, epoch: int, deadline: float | None = None) -> tuple[float, bool]:
        """One epoch of training (0-based ``epoch``), cut short after the first step that ends past
        ``deadline`` (``time.monotonic()``; all ranks stop at the same step); returns the mean training loss over
        its patches and whether the deadline was reached."""
        from brats.progress import Progress

        tc, rt = self.cfg.train, self.rt
        loader, steps = train_loader(
            self.train_ds, tc, rt, self.cfg.seed, epoch, self.sample_weights, self.collate
        )
        self.net.train()
        total = torch.zeros(2, dtype=torch.float64)
        over = False
        bar = Progress(
            total=steps, desc=f"epoch {epoch + 1}/{tc.epochs}", enabled=self.progress and rt.is_main
        )
        for step, batch in enumerate(loader):
            seconds = 0.0
            if tc.scheduler.name == "cosine" or self.average is not None:
                seconds = self._rank0(self._clock[1] + time.monotonic() - self._clock[0])
            if tc.scheduler.name == "cosine":
                anneal(self.optimizer, tc, epoch * steps + step, steps, seconds)
            x, y = self._batch(batch)
            with self._autocast():
                logits = self.net(x)
            loss = self.train_loss(logits, y)
            value = float(loss.detach())
            if not math.isfinite(value):
                raise TrainError(
                    f"the training loss is {value} at epoch {epoch + 1}, step {step + 1}: lower train.lr, "
                    "or set train.amp=off"
                )
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self._update_average(epoch * steps + step, steps, seconds)
            total += torch.tensor([value * len(x), len(x)], dtype=torch.float64)
            bar.update(1)
            bar.set_postfix(loss=f"{total[0] / total[1]:.4f}")
            if tc.log_every and (step + 1) % tc.log_every == 0:
                log.debug("epoch %d step %d/%d: loss %.4f", epoch + 1, step + 1, steps, total[0] / total[1])
            over = deadline is not None and self._rank0(float(time.monotonic() >= deadline)) > 0
            if over:
                break
        bar.close()
        self._sync_buffers()
        total = self._sum(total)
        return float(total[0] / total[1]), over

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Loss, per-class and WT/TC region Dice (pooled confusion matrix, empty rule ``brats``) on validation."""
        tc = self.cfg.train
        model = self.eval_model
        model.eval()  # the bare model: ranks may run different numbers of batches
        sums = torch.zeros(2, dtype=torch.float64)
        k = self.num_classes
        cm = torch.zeros(k, k, dtype=torch.float64)
        for batch in val_loader(self.val_ds, tc, self.rt):
            x, y = self._batch(batch)
            with self._autocast():
                logits = model(x)
            loss = self.loss_fn(logits, y)
            sums += torch.tensor([float(loss) * len(x), len(x)], dtype=torch.float64)
            pred = decode_logits(logits, self.cfg.model.output).cpu()
            cm += torch.as_tensor(confusion_matrix(pred, y.cpu(), num_classes=k), dtype=torch.float64)
        sums, cm = self._sum(sums), self._sum(cm)
        out = {"val_loss": float(sums[0] / sums[1]) if sums[1] else math.nan}
        dice = pooled_dice(cm.numpy(), binary=self.scheme.is_binary)
        out.update({f"val_dice_{name}": float(v) for name, v in dice.items()})
        return out

    # -- helpers ----------------------------------------------------------------------------------------------

    @property
    def eval_model(self) -> nn.Module:
        """The model that is validated and saved: the weight average once ``train.swa_start`` has begun it,
        else the model."""
        return self.model if averaged_steps(self.average) == 0 else self.average.module  # type: ignore[union-attr]

    def _update_average(self, steps_done: int, steps_per_epoch: int, seconds: float) -> None:
        """Add the weights to the average (``train.swa_start``) when the step just taken began at or after that
        fraction of the run (:func:`brats.train.schedule.run_progress`, as the cosine schedule counts it)."""
        tc = self.cfg.train
        if self.average is None or tc.swa_start is None:
            return
        budget = None if tc.max_minutes is None else 60.0 * tc.max_minutes
        if run_progress(steps_done, tc.epochs * steps_per_epoch, seconds, budget) >= tc.swa_start:
            self.average.update_parameters(self.model)

    def _sum(self, t: torch.Tensor) -> torch.Tensor:
        """Sum a CPU float64 tensor over ranks (identity without DDP)."""
        if not self.rt.distributed:
            return t
        buf = t.to(self.rt.device) if dist.get_backend() == "nccl" else t.clone()
        dist.all_reduce(buf)
        return buf.cpu()

    def _sync_buffers(self) -> None:
        """Average floating-point buffers (BatchNorm running statistics) over ranks, so every rank, and the
        checkpoint, holds the same model state (DDP itself only broadcasts rank 0's before each forward)."""
        if not self.rt.distributed:
            return
        for module in {id(m): m for m in (self.model, self.eval_model)}.values():
            for buf in module.buffers():
                if not buf.is_floating_point():
                    continue
                dist.all_reduce(buf)
                buf.div_(self.rt.world_size)

    def _rank0(self, value: float) -> float:
        """Rank 0's ``value`` on every rank (its clock: all ranks stop at the same step and share one lr)."""
        if not self.rt.distributed:
            return value
        t = torch.tensor([float(value)], dtype=torch.float64)
        t = t.to(self.rt.device) if dist.get_backend() == "nccl" else t
        dist.broadcast(t, src=0)
        return float(t.item())

    def _update_best(self, score: float) -> bool:
        if not math.isfinite(score):
            return self.best_score is None
        better = (
            self.best_score is None
            or (self.best_mode == "min" and score < self.best_score)
            or (self.best_mode == "max" and score > self.best_score)
        )
        if better:
            self.best_score = float(score)
        return better

    def _write(self, improved: bool) -> None:
        ckpt = self.checkpoint()
        write_checkpoint(ckpt, self.paths["last"])
        if improved:
            write_checkpoint(ckpt, self.paths["best"])
        write_metrics_csv(self.history, self.paths["metrics"])
        plot_curves(self.history, self.paths["curves"])

    def close(self) -> None:
        """Release the stores' file handles and leave the process group this trainer joined."""
        self.train_ds.close()
        self.val_ds.close()
        if self.rt.owns_group and dist.is_initialized():
            dist.destroy_process_group()
