"""Runtime set-up of training: device and mixed precision, seeding, RNG state, distributed processes, loaders.

Determinism: every epoch ``e`` starts from seeds derived from ``(seed, e)`` only (:func:`epoch_seed`): the
global torch / NumPy / Python generators (augmentation in the main process), the sampler's permutation and
the DataLoader workers' base seed. So an epoch does not depend on what ran before it apart from the model and
optimiser state, and "train 2 epochs, resume for 2 more" equals "train 4 epochs" exactly on CPU.
"""

from __future__ import annotations

import copy
import logging
import os
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler, Sampler, WeightedRandomSampler

from brats.config import Config, TrainConfig
from brats.devices import resolve_device
from brats.errors import BratsError
from brats.extract.store import read_store_info
from brats.networks import input_multiple
from brats.precision import choose_cpu_precision, cpu_has_bf16
from brats.preprocess import Normalization

__all__ = [
    "TrainError",
    "Runtime",
    "resolve_amp",
    "probe_amp",
    "epoch_seed",
    "seed_everything",
    "rng_state",
    "set_rng_state",
    "init_distributed",
    "check_stores",
    "train_loader",
    "val_loader",
]

log = logging.getLogger(__name__)


class TrainError(BratsError, RuntimeError):
    """Training cannot start or continue (bad settings, missing store or checkpoint)."""


@dataclass
class Runtime:
    """Where and how training runs.

    Attributes:
        device: the torch device of this process.
        amp_dtype: autocast dtype (``torch.float16`` / ``torch.bfloat16``) or ``None`` (float32).
        use_scaler: whether a GradScaler scales the loss (float16 on CUDA).
        rank, world_size, local_rank: distributed position (0, 1, 0 without torchrun).
        owns_group: this call initialised the process group (and destroys it at the end).
    """

    device: torch.device
    amp_dtype: torch.dtype | None
    use_scaler: bool
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owns_group: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def resolve_amp(amp: str, device: torch.device) -> tuple[torch.dtype | None, bool]:
    """Mixed-precision rule -> ``(autocast dtype or None, use GradScaler)``.

    ``auto``: float16 + GradScaler on CUDA, float32 on CPU until :func:`probe_amp` measures bf16 against it
    (the trainer calls it once the model exists). ``fp16``: float16 + GradScaler (CUDA only).
    ``bf16``: bfloat16 autocast without scaler (on a CPU without bf16 instructions this is many times slower
    than float32: a warning says so). ``off``: float32.
    """
    if amp == "off":
        return None, False
    if amp == "auto":
        return (torch.float16, True) if device.type == "cuda" else (None, False)
    if amp == "fp16":
        if device.type != "cuda":
            raise TrainError("train.amp=fp16 needs a CUDA device; on CPU use train.amp=off (or bf16)")
        return torch.float16, True
    if amp == "bf16":
        if device.type == "cpu" and not _cpu_has_bf16():
            log.warning("train.amp=bf16 on a CPU without bf16 instructions is much slower than float32")
        return torch.bfloat16, False
    raise TrainError(f"train.amp must be auto, fp16, bf16 or off, got {amp!r}")


def _cpu_has_bf16() -> bool:
    return cpu_has_bf16()


def probe_amp(
    train_cfg: TrainConfig,
    rt: Runtime,
    model: nn.Module,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    input_shape: tuple[int, ...],
    what: Any,
) -> dict[str, Any] | None:
    """``train.amp: auto`` on a CPU: time training steps in float32 and bf16 and set ``rt.amp_dtype``.

    A copy of ``model`` (with its own Adam) takes ``warmup + steps`` training steps on a random batch of
    ``input_shape`` ``(B, C, H, W)`` in each precision (:func:`brats.precision.choose_cpu_precision`, cached
    per machine and ``what``, e.g. the model config and patch shape); the model itself, its batch-norm
    statistics and the global RNG are untouched. Returns the probe's record (None when nothing was chosen:
    ``amp`` is not ``auto``, the device is not a CPU, or the run is distributed, which stays in float32).
    """
    if train_cfg.amp != "auto" or rt.device.type != "cpu" or rt.distributed:
        return None
    probe = copy.deepcopy(model).train()
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(input_shape, generator=gen)
    if train_cfg.channels_last and x.ndim == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        classes = int(probe(x[:1]).shape[1])
    y = torch.randint(0, classes, (input_shape[0], *input_shape[2:]), generator=gen)

    opt = torch.optim.Adam([p for p in probe.parameters() if p.requires_grad], lr=train_cfg.lr)

    def step() -> None:  # as the trainer's step: forward under autocast, float32 loss, backward, Adam
        logits = probe(x)  # under the probe's autocast
        with torch.autocast("cpu", enabled=False):
            loss = loss_fn(logits.float(), y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    record = choose_cpu_precision(step, "train", what)
    rt.amp_dtype = torch.bfloat16 if record["choice"] == "bf16" else None
    timed = record["fp32_s"] is not None and record["bf16_s"] is not None  # None: decided without a probe
    log.info(
        "train.amp=auto on %s: %s (%s%s%s)",
        record["cpu"], record["choice"], record["reason"],
        f"; float32 {record['fp32_s']} s, bf16 {record['bf16_s']} s per step" if timed else "",
        ", cached" if record["cached"] else "",
    )  # fmt: skip
    return record


def epoch_seed(seed: int, epoch: int, *stream: int) -> int:
    """A 63-bit seed derived from ``(seed, epoch, *stream)`` (NumPy ``SeedSequence``)."""
    state = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(epoch), *[int(s) for s in stream]])
    return int(state.generate_state(2, dtype=np.uint64)[0] >> np.uint64(1))


def seed_everything(seed: int) -> None:
    """Seed torch (CPU and CUDA), NumPy's global generator and Python's ``random``."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


def rng_state() -> dict[str, Any]:
    """The global RNG states as tensors and plain values (loadable with ``weights_only``)."""
    np_state: Any = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "bit_generator": str(np_state[0]),
            "keys": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore :func:`rng_state`."""
    torch.set_rng_state(state["torch"].cpu())
    s = state["numpy"]
    np.random.set_state(
        (
            s["bit_generator"],
            s["keys"].numpy().astype(np.uint32),
            s["pos"],
            s["has_gauss"],
            s["cached_gaussian"],
        )
    )
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def init_distributed(train_cfg: TrainConfig) -> Runtime:
    """The :class:`Runtime` of this process; under ``torchrun`` (``WORLD_SIZE`` > 1) joins the process group
    (``nccl`` on CUDA, ``gloo`` on CPU) unless one is already initialised."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", str(rank)))
    device = resolve_device(train_cfg.device, local_rank if world > 1 else 0, key="train.device")
    amp_dtype, use_scaler = resolve_amp(train_cfg.amp, device)
    owns = False
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend=backend, rank=rank, world_size=world)
        owns = True
        log.info("rank %d/%d joined the %s process group", rank, world, backend)
    if dist.is_initialized():
        rank, world = dist.get_rank(), dist.get_world_size()
    return Runtime(device, amp_dtype, use_scaler, rank, world, local_rank, owns)


def _worker_init(worker_id: int) -> None:
    """Seed NumPy and ``random`` in a DataLoader worker from its torch seed (itself from the loader's generator),
    and give its BLAS (NumPy's and SciPy's) one thread, as PyTorch gives the worker's torch one: a worker shares the
    cores with training, and an idle BLAS pool's spinning threads take CPU from it (docs/training.md, "Thirty-sixth
    round": a fifth of each epoch, for one small matrix product per patch)."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1, user_api="blas")  # for the worker's lifetime
    seed = torch.initial_seed()
    np.random.seed(seed % 2**32)
    random.seed(seed)


class _CycleDistributedSampler(Sampler[int]):
    """A :class:`~torch.utils.data.DistributedSampler` drawn for ``num_samples`` indices per replica, passing
    over the data as many times as needed (each pass a new permutation, the same on every rank)."""

    def __init__(self, dataset: Any, num_samples: int, rank: int, world: int, seed: int, epoch: int):
        self.dataset, self.num_samples = dataset, int(num_samples)
        self.rank, self.world, self.seed, self.epoch = rank, world, seed, epoch

    def __iter__(self) -> Iterator[int]:
        out: list[int] = []
        passes = 0
        while len(out) < self.num_samples:
            s: DistributedSampler = DistributedSampler(
                self.dataset, self.world, self.rank, shuffle=True, seed=self.seed
            )
            s.set_epoch(epoch_seed(self.seed, self.epoch, passes) % 2**31)
            out.extend(iter(s))
            passes += 1
        return iter(out[: self.num_samples])

    def __len__(self) -> int:
        return self.num_samples


def train_loader(
    dataset: Any,
    train_cfg: TrainConfig,
    rt: Runtime,
    seed: int,
    epoch: int,
    weights: np.ndarray | None = None,
    collate_fn: Callable[[list[Any]], Any] | None = None,
) -> tuple[DataLoader, int]:
    """The shuffled training loader of ``epoch`` and its number of steps.

    One pass over the data per epoch (split across ranks by a ``DistributedSampler``), or exactly
    ``train.steps_per_epoch`` batches (passing over the data several times if needed). The permutation and
    the workers' seeds depend only on ``(seed, epoch)``. With ``weights`` (one per patch,
    :func:`brats.train.sampling.core_weights`) patches are drawn with replacement in proportion to them
    instead, the same number per epoch and rank. ``collate_fn``: the loader's (e.g. the batched augmentation of
    :mod:`brats.train.batch_augment`); None: PyTorch's default.
    """
    n = len(dataset)
    if n == 0:
        raise TrainError("the training store holds no patches")
    bs = int(train_cfg.batch_size)
    if bs < 1:
        raise TrainError(f"train.batch_size must be >= 1, got {bs}")
    steps = train_cfg.steps_per_epoch
    gen = torch.Generator().manual_seed(epoch_seed(seed, epoch, 1))
    sampler: Sampler[int]
    per_rank = steps * bs if steps else -(-n // rt.world_size)
    if weights is not None:
        if len(weights) != n:
            raise TrainError(f"{len(weights)} sampling weights for {n} training patches")
        # each rank draws its own share, from a generator seeded by (seed, epoch, rank)
        rank_gen = torch.Generator().manual_seed(epoch_seed(seed, epoch, 1, rt.rank))
        w = np.asarray(weights, dtype=np.float64).tolist()
        sampler = WeightedRandomSampler(w, per_rank, replacement=True, generator=rank_gen)
    elif rt.distributed:
        sampler = _CycleDistributedSampler(dataset, per_rank, rt.rank, rt.world_size, seed, epoch)
    else:
        sampler = RandomSampler(dataset, num_samples=steps * bs if steps else n, generator=gen)
    loader = DataLoader(
        dataset,
        batch_size=bs,
        sampler=sampler,
        num_workers=int(train_cfg.num_workers),
        pin_memory=bool(train_cfg.pin_memory) and rt.device.type == "cuda",
        worker_init_fn=_worker_init,
        collate_fn=collate_fn,
        generator=torch.Generator().manual_seed(epoch_seed(seed, epoch, 2)),
        drop_last=False,
    )
    return loader, len(loader)


def val_loader(dataset: Any, train_cfg: TrainConfig, rt: Runtime) -> DataLoader:
    """The validation loader: in order; with ``train.val_max_batches`` only ``val_max_batches x batch_size``
    patches spread evenly over the store (the same ones every epoch); under DDP rank ``r`` takes patches
    ``r, r + world, ...`` of those (no padding, so the summed counts over ranks cover each exactly once)."""
    from torch.utils.data import Subset

    cap = None if train_cfg.val_max_batches is None else int(train_cfg.val_max_batches * train_cfg.batch_size)
    if cap is not None and cap < len(dataset):
        dataset = Subset(dataset, np.linspace(0, len(dataset) - 1, cap).round().astype(int).tolist())
    if rt.distributed:
        dataset = Subset(dataset, list(range(rt.rank, len(dataset), rt.world_size)))
    return DataLoader(
        dataset,
        batch_size=int(train_cfg.batch_size),
        shuffle=False,
        num_workers=int(train_cfg.num_workers),
        pin_memory=bool(train_cfg.pin_memory) and rt.device.type == "cuda",
        worker_init_fn=_worker_init,
    )


def check_stores(cfg: Config, folder: Path) -> dict[str, Any]:
    """Check ``folder/{train,val}.h5`` against each other and the config; return the train store's info.

    Raises:
        TrainError: a missing store, an empty validation store, or a store that does not match the config
            (modalities, dimension, normalisation) or the model (patch size not divisible by ``2 ** depth``).
    """
    for split in ("train", "val"):
        if not (folder / f"{split}.h5").is_file():
            raise TrainError(f"{folder / f'{split}.h5'} not found: run `brats extract --config CFG` first")
    info = read_store_info(folder / "train.h5")
    val = read_store_info(folder / "val.h5")
    if int(val["n_patches"]) == 0:
        raise TrainError(f"{folder / 'val.h5'} holds no patches; check data.val_fraction and re-extract")
    for key in ("modalities", "label_scheme", "dim"):
        if info.get(key) != val.get(key):
            raise TrainError(f"train.h5 and val.h5 differ in {key}: {info.get(key)} vs {val.get(key)}")
    if list(info["modalities"]) != list(cfg.data.modalities):
        raise TrainError(
            f"{folder / 'train.h5'} holds modalities {info['modalities']} but data.modalities is "
            f"{cfg.data.modalities}; re-extract the patches or fix the config"
        )
    if int(info["dim"]) != cfg.patches.dim:
        raise TrainError(
            f"{folder / 'train.h5'} holds {info['dim']}D patches but patches.dim={cfg.patches.dim}"
        )
    try:
        recorded = Normalization.from_dict(info.get("normalization"), where=f"{folder / 'train.h5'}")
    except BratsError as exc:
        raise TrainError(f"{exc}; re-extract the patches with this toolkit") from exc
    conflicts = recorded.conflicts(Normalization.from_config(cfg.preprocess))
    if conflicts:
        raise TrainError(
            f"{folder / 'train.h5'} was normalised differently from the config's preprocess section "
            f"({'; '.join(conflicts)}); prediction would normalise differently: re-extract or fix the config"
        )
    stored_k, k_cfg = int(info.get("context_slices", 0)), int(cfg.patches.context_slices)
    if stored_k != k_cfg:
        raise TrainError(
            f"{folder / 'train.h5'} holds context_slices={stored_k} but patches.context_slices={k_cfg}; re-extract"
        )
    size = list(cfg.patches.size) if cfg.augment.crop_or_pad else list(info["patch_size"])
    try:
        k = input_multiple(cfg.model)
    except BratsError as exc:
        raise TrainError(str(exc)) from exc
    if any(s % k for s in size):
        fit = [-(-s // k) * k for s in size]
        monai = cfg.model.arch.lower().startswith("monai.")
        what = f"the downsampling of {cfg.model.arch}" if monai else "2**model.encoder_depth"
        raise TrainError(f"patch size {size} is not divisible by {what} = {k}; use patches.size {fit}")
    return info
