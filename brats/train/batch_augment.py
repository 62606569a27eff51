"""The 2D train augmentation applied to a whole batch at once (``augment.engine: batch``).

The TorchIO pipeline of :mod:`brats.train.augment` runs patch by patch: on a 2-core EPYC it took about half of a
training step's CPU (docs/training.md, "Twenty-ninth round"), and its loader process took a core from the
model's threads. :class:`BatchAugment` is a DataLoader ``collate_fn``: it stacks the raw samples of a batch and
draws, for each patch on its own, the same transforms with the same parameter distributions as the per-patch
pipeline, then applies them with batched torch operations::

    OneOf{flip, affine, elastic}                    p = spatial_p, by weight; affine/elastic by grid_sample
    channel bias (each modality and its mirror)     p = channel_bias.p        (brats.train.channel_bias)
    per-channel percentile rescaling                                           (brats.preprocess.rescale_batch)
    OneOf{noise, bias field}                        p = intensity_p (or each, intensity_combine: each)
    label remapping to training classes

Each step matches its per-patch twin for the same draws (tests/test_batch_augment.py): flips as
:class:`torchio.RandomFlip` (each axis with probability 0.5), affine and elastic grids from
:mod:`brats.train.warp`, the channel bias and mirror images as :class:`~brats.train.channel_bias.RandomChannelBias`
inside :class:`~brats.train.mirror_pairs.MirrorPairs`, noise as :class:`torchio.RandomNoise` (one standard
deviation per patch, drawn in ``[0, noise.std]``) and the bias field as :class:`torchio.RandomBiasField` (a
polynomial of ``order`` 3 in the patch's normalised coordinates, coefficients uniform in ``[-c, c]``; the terms
along the patch's one-voxel third axis are 0 there, so only the in-plane ones are drawn). Only the random
numbers' order differs, so a run is reproducible but not the same run as with ``engine: patch``.

Other transforms (gamma, lesion contrast, intensity curve, blur, modality dropout, anisotropy, TorchIO's warps)
are not batched: :func:`build_batch_augment` names the one that is enabled.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from brats.config import Config
from brats.labels import LabelScheme, get_scheme, to_classes
from brats.preprocess import rescale_batch
from brats.train.augment import (
    AugmentError,
    build_transform,
    check_prob,
    oneof_weights,
    rescaled_channels,
)
from brats.train.mirror_pairs import GAP
from brats.train.warp import affine_thetas, elastic_draws, elastic_grid_2d

__all__ = [
    "BatchAugment",
    "build_batch_augment",
    "bias_fields",
    "channel_bias_batch",
    "mirror_bias_batch",
    "UNBATCHED",
]

#: The transforms (``augment`` keys) that ``augment.engine: batch`` does not run; :func:`build_batch_augment` refuses
#: a training config that enables one.
UNBATCHED = (
    "gamma",
    "lesion_contrast",
    "thick_slices",
    "intensity_curve",
    "blur",
    "modality_dropout",
    "anisotropy",
)


def _pick(n: int, p: float, weights: Sequence[float]) -> torch.Tensor:
    """Per patch: -1 (nothing, probability ``1 - p``) or the index of one option drawn by ``weights``."""
    apply = torch.rand(n) < p
    if not weights:
        return torch.full((n,), -1, dtype=torch.long)
    w = torch.tensor([float(v) for v in weights], dtype=torch.float64)
    choice = torch.multinomial(w, n, replacement=True)
    return torch.where(apply, choice, torch.full_like(choice, -1))


def _cubic_weights(size: int, grid: int) -> torch.Tensor:
    """``(size, grid)`` weights of bicubic interpolation (``align_corners=True``) from ``grid`` points to ``size``:
    ``F.interpolate(c, mode="bicubic")`` of a ``grid x grid`` image is ``A_h c A_w^T`` (it is separable)."""
    eye = torch.eye(grid, dtype=torch.float64).view(grid, 1, grid, 1)
    return F.interpolate(eye, size=(size, 1), mode="bicubic", align_corners=True)[:, 0, :, 0].T


def _unit_log_gains(n: int, h: int, w: int, grid: int, s: torch.Tensor) -> torch.Tensor:
    """``(n, h, w)``: ``s_k`` times :func:`~brats.train.channel_bias.smooth_fields` (unit fields), with the fields'
    mean and standard deviation taken exactly from the ``grid x grid`` values (the field is ``A_h c A_w^T``, so
    its sum and sum of squares are bilinear and quadratic forms of ``c``) instead of from the ``h x w`` voxels."""
    coarse = torch.randn((n, 1, grid, grid))[:, 0].to(torch.float64)
    a_h, a_w = _cubic_weights(h, grid), _cubic_weights(w, grid)
    total = a_h.sum(0) @ coarse @ a_w.sum(0)  # (n,)
    squares = torch.einsum("nij,ik,nkl,jl->n", coarse, a_h.T @ a_h, coarse, a_w.T @ a_w)
    voxels = h * w
    mean = total / voxels
    std = ((squares - voxels * mean**2).clamp(min=0) / (voxels - 1)).sqrt()
    scale = torch.where(std > 1e-6, s.to(torch.float64) / std.clamp(min=1e-6), torch.zeros_like(std))
    field = a_h.float() @ (coarse * scale.view(n, 1, 1)).float() @ a_w.float().T
    return field - (mean * scale).float().view(n, 1, 1)


def channel_bias_batch(x: torch.Tensor, max_std: float, grid: int, apply: torch.Tensor) -> torch.Tensor:
    """:class:`~brats.train.channel_bias.RandomChannelBias` on the patches of ``x`` (``(B, C, H, W)``) where
    ``apply`` (``(B,)`` bool) holds: each channel's non-zero voxels ``v`` become ``lo + (v - lo) exp(s f)``,
    ``lo`` the channel's smallest non-zero value, ``s`` uniform in ``[0, max_std]``, ``f`` a unit smooth field."""
    sel = apply.nonzero()[:, 0]
    if len(sel) == 0:
        return x
    part = x[sel]
    b, c, h, w = part.shape
    s = float(max_std) * torch.rand(b * c)
    gain = torch.exp(_unit_log_gains(b * c, h, w, grid, s).view(b, c, h, w))
    brain = part != 0
    lo = torch.where(brain, part, torch.full_like(part, float("inf"))).amin(dim=(-2, -1), keepdim=True)
    lo = torch.where(torch.isfinite(lo), lo, torch.zeros_like(lo))
    out = x.clone()
    out[sel] = torch.where(brain, lo + (part - lo) * gain, part)
    return out


def mirror_bias_batch(
    x: torch.Tensor, channels: int, max_std: float, grid: int, apply: torch.Tensor
) -> torch.Tensor:
    """:func:`channel_bias_batch` inside :class:`~brats.train.mirror_pairs.MirrorPairs`: on each modality laid
    beside its mirror image (``[I | gap | M]``), the asymmetry channels computed again from the two."""
    r = int(channels)
    b, c, h, w = x.shape
    if c != 2 * r:
        raise AugmentError(f"mirror pairs expect {2 * r} channels (modalities, then asymmetries), got {c}")
    mod, asym = x[:, :r], x[:, r:]
    both = (asym != 0).any(dim=1, keepdim=True)
    mirrored = torch.where(both, mod - asym, torch.zeros_like(mod))
    wide = torch.cat([mod, torch.zeros((b, r, h, GAP)), mirrored], dim=-1)
    out = channel_bias_batch(wide, max_std, grid, apply)
    mod2, mirrored2 = out[..., :w], out[..., w + GAP :]
    return torch.cat([mod2, torch.where(both, mod2 - mirrored2, torch.zeros_like(mod2))], dim=1)


def bias_fields(h: int, w: int, coefficients: torch.Tensor, order: int = 3) -> torch.Tensor:
    """``(B, H, W)`` multiplicative fields of :class:`torchio.BiasField` on ``(C, H, W, 1)`` patches:
    ``exp(sum_k c_k x^i y^j)`` over ``i + j <= order`` (``coefficients`` ``(B, K)``, in TorchIO's order of the
    terms without the third axis), ``x`` and ``y`` the voxel centres scaled to ``[-1, 1]`` along each axis."""
    xs = torch.arange(h, dtype=torch.float64) - (h - 1) / 2
    ys = torch.arange(w, dtype=torch.float64) - (w - 1) / 2
    xs, ys = xs / xs.max().clamp(min=1e-12), ys / ys.max().clamp(min=1e-12)
    terms = [xs[:, None] ** i * ys[None, :] ** j for i in range(order + 1) for j in range(order + 1 - i)]
    basis = torch.stack(terms)  # (K, H, W)
    if coefficients.shape[-1] != basis.shape[0]:
        raise AugmentError(f"a bias field of order {order} takes {basis.shape[0]} coefficients")
    return torch.exp(torch.einsum("bk,khw->bhw", coefficients.to(torch.float64), basis)).float()


class BatchAugment:
    """A DataLoader ``collate_fn`` that stacks raw samples and augments the batch (module doc). Picklable.

    Args:
        cfg: the run's config (``augment``, ``patches``, ``data``, ``preprocess``).
        scheme: the store's source label scheme.
        train: False gives the validation pipeline (rescaling and remapping only).
    """

    def __init__(self, cfg: Config, scheme: LabelScheme | str, train: bool = True):
        aug = cfg.augment
        # the per-patch builder checks every augment setting and names the bad one; its pipeline is not used
        build_transform(cfg, "train" if train else "val", scheme)
        self.scheme = get_scheme(scheme)
        self.size = tuple(int(v) for v in cfg.patches.size)
        self.random = bool(train and aug.enabled)
        self.spatial_p = check_prob(aug.spatial_p, "spatial_p")
        spatial = [n for n in ("flip", "affine", "elastic") if getattr(aug, n).enabled]
        weights = oneof_weights(aug, spatial)
        self.spatial = [n for n, wt in zip(spatial, weights) if wt > 0]
        self.spatial_weights = [wt for wt in weights if wt > 0]
        self.flip_axes = tuple(int(a) for a in aug.flip.axes)
        self.degrees, self.scales = float(aug.affine.degrees), float(aug.affine.scales)
        self.control_points = int(aug.elastic.num_control_points)
        self.displacement = float(aug.elastic.max_displacement)
        cb = aug.channel_bias
        self.bias_p = check_prob(cb.p, "channel_bias.p") if cb.enabled else 0.0
        self.bias_std, self.bias_grid = float(cb.max_std), int(cb.grid)
        self.channels = rescaled_channels(cfg)  # modality channels before the asymmetry channels, or None
        self.mirror = bool(aug.recompute_asymmetry and cfg.preprocess.asymmetry)
        r = aug.rescale
        self.rescale = (tuple(float(v) for v in r.out_min_max), tuple(float(v) for v in r.percentiles))
        self.rescale_on = bool(r.enabled)
        self.intensity_p = check_prob(aug.intensity_p, "intensity_p")
        self.combine = aug.intensity_combine
        names = [n for n in ("noise", "bias_field") if getattr(aug, n).enabled]
        weights = oneof_weights(aug, names)
        self.intensity = [n for n, wt in zip(names, weights) if wt > 0]
        self.intensity_weights = [wt for wt in weights if wt > 0]
        self.noise_std = float(aug.noise.std)
        self.field_c = float(aug.bias_field.coefficients)

    # -- the steps ----------------------------------------------------------------------------------------------

    def _spatial(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, _, h, w = x.shape
        choice = _pick(b, self.spatial_p, self.spatial_weights)
        op = {n: choice == i for i, n in enumerate(self.spatial)}
        if "flip" in op:
            draw = torch.rand(b, 2) < 0.5
            for axis in self.flip_axes:
                m = op["flip"] & draw[:, axis]
                if m.any():
                    x[m], y[m] = x[m].flip(2 + axis), y[m].flip(1 + axis)
        grids = []
        idx = torch.zeros(0, dtype=torch.long)
        if "affine" in op and op["affine"].any():
            sel = op["affine"].nonzero()[:, 0]
            r = torch.rand(len(sel), 3, dtype=torch.float64)
            degrees, scales = (r[:, 0] * 2 - 1) * self.degrees, 1 + (r[:, 1:] * 2 - 1) * self.scales
            grids.append(
                F.affine_grid(
                    affine_thetas(h, w, degrees, scales[:, 0], scales[:, 1]),
                    [len(sel), 1, h, w],
                    align_corners=False,
                )
            )
            idx = torch.cat([idx, sel])
        if "elastic" in op and op["elastic"].any():
            sel = op["elastic"].nonzero()[:, 0]
            grids.append(
                elastic_grid_2d(h, w, elastic_draws(len(sel), self.control_points, self.displacement))
            )
            idx = torch.cat([idx, sel])
        if len(idx):
            grid = torch.cat(grids)
            x[idx] = F.grid_sample(x[idx], grid, mode="bilinear", padding_mode="zeros", align_corners=False)
            lab = F.grid_sample(
                y[idx, None].float(), grid, mode="nearest", padding_mode="zeros", align_corners=False
            )
            y[idx] = lab[:, 0].round().to(y.dtype)
        return x, y

    def _channel_bias(self, x: torch.Tensor) -> torch.Tensor:
        apply = torch.rand(x.shape[0]) < self.bias_p
        if not apply.any():
            return x
        if self.mirror:
            return mirror_bias_batch(x, int(self.channels or 0), self.bias_std, self.bias_grid, apply)
        return channel_bias_batch(x, self.bias_std, self.bias_grid, apply)

    def _noise(self, x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        sel = m.nonzero()[:, 0]
        std = torch.rand(len(sel)) * self.noise_std
        x[sel] += torch.randn((len(sel), *x.shape[1:])) * std.view(-1, 1, 1, 1)
        return x

    def _bias_field(self, x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        sel = m.nonzero()[:, 0]
        _, _, h, w = x.shape
        coefficients = (torch.rand(len(sel), 10, dtype=torch.float64) * 2 - 1) * self.field_c
        x[sel] *= bias_fields(h, w, coefficients)[:, None]
        return x

    def _intensity(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        steps = {"noise": self._noise, "bias_field": self._bias_field}
        if self.combine == "each":
            for name in self.intensity:
                x = steps[name](x, torch.rand(b) < self.intensity_p)
            return x
        choice = _pick(b, self.intensity_p, self.intensity_weights)
        for i, name in enumerate(self.intensity):
            if (choice == i).any():
                x = steps[name](x, choice == i)
        return x

    # -- collate ------------------------------------------------------------------------------------------------

    def __call__(self, samples: list[dict[str, Any]]) -> dict[str, Any]:
        x = torch.stack([torch.as_tensor(np.asarray(s["image"]), dtype=torch.float32) for s in samples])
        labels = np.stack([np.asarray(s["label"]) for s in samples])
        if x.ndim != 4 or tuple(x.shape[2:]) != self.size or labels.shape != (x.shape[0], *self.size):
            raise AugmentError(
                f"augment.engine=batch needs (C, H, W) patches of patches.size {list(self.size)} and labels (H, W); "
                f"got {tuple(x.shape[1:])} and {labels.shape[1:]} (patch {samples[0].get('index')})"
            )
        first = samples[0].get("index")
        y = torch.from_numpy(to_classes(labels, self.scheme, where=f"patches from {first}").astype(np.int64))
        if self.random:
            x, y = self._spatial(x, y)
            if self.bias_p > 0:
                x = self._channel_bias(x)
        if self.rescale_on:
            x = rescale_batch(x, *self.rescale, channels=self.channels)
        if self.random:
            x = self._intensity(x)
        index = torch.as_tensor([int(s.get("index", -1)) for s in samples])
        return {"image": x.float().contiguous(), "label": y.contiguous(), "index": index}


def build_batch_augment(cfg: Config, scheme: LabelScheme | str, train: bool = True) -> BatchAugment:
    """The batched pipeline of ``cfg`` (module doc).

    Raises:
        AugmentError: 3D patches, a transform that is not batched, or TorchIO's warps.
    """
    aug = cfg.augment
    if cfg.patches.dim != 2:
        raise AugmentError(f"augment.engine=batch works on 2D patches, not patches.dim={cfg.patches.dim}")
    if train and aug.enabled:
        for name in UNBATCHED:
            if getattr(aug, name).enabled:
                raise AugmentError(
                    f"augment.{name} is not batched: set augment.{name}.enabled=false or augment.engine=patch"
                )
        if aug.warp != "torch" and (aug.affine.enabled or aug.elastic.enabled):
            raise AugmentError("augment.engine=batch resamples with torch: set augment.warp=torch")
    return BatchAugment(cfg, scheme, train)
