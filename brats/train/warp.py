"""Random affine and elastic warps of 2D patches resampled by ``torch.nn.functional.grid_sample``.

TorchIO's :class:`~torchio.RandomAffine` and :class:`~torchio.RandomElasticDeformation` resample through
SimpleITK, in 3D, one channel at a time: with them the 2D train pipeline ran at 48 patches/s on a 2-core EPYC,
with these 112 (``augment_by_warp`` of ``python bench/train.py --augment 400``). The two transforms here draw
the same kinds of parameters and resample every channel of a 2D subject ``(C, H, W, 1)`` at once:

* :class:`RandomAffine2D`: a rotation in ``[-degrees, degrees]`` and a scale per axis in ``[1 - s, 1 + s]``
  about the patch centre (a scale above 1 zooms in), as ``augment.affine`` configures TorchIO's;
* :class:`RandomElastic2D`: a displacement drawn uniformly in ``[-max_displacement, max_displacement]`` voxels
  per axis at each point of an ``n x n`` control grid whose two outer rings stay fixed (TorchIO's
  ``locked_borders=2``), spread over the patch by a uniform cubic B-spline with ``n - 3`` mesh intervals across
  the patch (the mesh TorchIO asks SimpleITK for; the fields are alike, not identical).

Images are resampled bilinearly and labels by nearest neighbour; samples outside the patch are 0 for both (the
background of a normalised patch). Randomness comes from ``torch``'s global generator, as in TorchIO, so seeding
torch reproduces a draw. Selected with ``augment.warp: torch`` (:mod:`brats.train.augment`).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
import torchio as tio

__all__ = [
    "RandomAffine2D",
    "RandomElastic2D",
    "affine_grid_2d",
    "affine_thetas",
    "elastic_draws",
    "elastic_grid_2d",
    "warp_subject",
]


def _identity_grid(h: int, w: int) -> torch.Tensor:
    """``(1, H, W, 2)`` sampling grid of the identity in grid_sample's normalised ``(x, y)`` coordinates."""
    theta = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]])
    return F.affine_grid(theta, [1, 1, h, w], align_corners=False)


def warp_subject(subject: tio.Subject, grid: torch.Tensor) -> tio.Subject:
    """Resample every image of a 2D ``subject`` (``(C, H, W, 1)``) at ``grid`` (``(1, H, W, 2)``, normalised
    ``(x, y)``, ``align_corners=False``): scalar images bilinearly, label maps by nearest neighbour, 0 outside."""
    for image in subject.get_images(intensity_only=False):
        data = image.data
        if data.ndim != 4 or data.shape[-1] != 1:
            raise ValueError(f"2D warps need images (C, H, W, 1), got {tuple(data.shape)}")
        is_label = image.type == tio.LABEL
        src = data[..., 0].unsqueeze(0).float()
        out = F.grid_sample(
            src, grid, mode="nearest" if is_label else "bilinear", padding_mode="zeros", align_corners=False
        )[0]
        image.set_data(out.to(data.dtype).unsqueeze(-1))
    return subject


def affine_grid_2d(h: int, w: int, degrees: float, sx: float, sy: float) -> torch.Tensor:
    """The sampling grid (``(1, H, W, 2)``) of a rotation by ``degrees`` and scales ``sx`` (first axis) and
    ``sy`` (second axis) about the centre of an ``H x W`` patch; TorchIO's ``Affine(scales=(sx, sy, 1),
    degrees=(0, 0, degrees))`` on a ``(C, H, W, 1)`` subject (tested against it)."""
    theta = affine_thetas(h, w, *(torch.tensor([float(v)], dtype=torch.float64) for v in (degrees, sx, sy)))
    return F.affine_grid(theta, [1, 1, h, w], align_corners=False)


def affine_thetas(h: int, w: int, degrees: torch.Tensor, sx: torch.Tensor, sy: torch.Tensor) -> torch.Tensor:
    """grid_sample's ``(B, 2, 3)`` matrices of :func:`affine_grid_2d` for ``B`` draws at once (1D tensors)."""
    a = torch.deg2rad(degrees.to(torch.float64))
    cos, sin = torch.cos(a), torch.sin(a)
    sx, sy = sx.to(torch.float64), sy.to(torch.float64)
    # output voxel p (centred; first axis i, second axis j) samples the input at R(a) S^-1 p. grid_sample's
    # normalised coordinates are (x, y) = (2 j / W, 2 i / H), so the off-diagonal terms carry the aspect ratio.
    m_ii, m_ij = cos / sx, sin / sy
    m_ji, m_jj = -sin / sx, cos / sy
    zero = torch.zeros_like(a)
    rows = [torch.stack([m_jj, m_ji * h / w, zero], -1), torch.stack([m_ij * w / h, m_ii, zero], -1)]
    return torch.stack(rows, dim=1).float()


def _bspline_basis(size: int, n: int, lo: float, hi: float) -> torch.Tensor:
    """``(size, n)`` weights of ``n`` control points on voxels ``0 .. size - 1`` for a uniform cubic B-spline whose
    ``n - 3`` mesh intervals span ``[lo, hi]`` (ITK's layout: one control point before ``lo``, two after ``hi``)."""
    u = (torch.arange(size, dtype=torch.float64) - lo) / (hi - lo) * (n - 3) + 1
    t = (u[:, None] - torch.arange(n, dtype=torch.float64)[None]).abs()
    near = 2 / 3 - t**2 + t**3 / 2
    far = (2 - t).clamp(min=0) ** 3 / 6
    return torch.where(t < 1, near, far).float()


def elastic_grid_2d(h: int, w: int, coarse: torch.Tensor) -> torch.Tensor:
    """The sampling grid (``(1, H, W, 2)``) of control-point displacements ``coarse`` (``(2, n, n)``, voxels
    along the first and second axis) spread over an ``H x W`` patch by a cubic B-spline whose mesh spans the
    patch's extent, half a voxel beyond the outer voxel centres. ``coarse`` ``(B, 2, n, n)`` gives ``B`` grids."""
    n = coarse.shape[-1]
    bh, bw = _bspline_basis(h, n, -0.5, h - 0.5), _bspline_basis(w, n, -0.5, w - 0.5)
    field = bh @ coarse.float() @ bw.T  # (..., 2, H, W)
    offset = torch.stack([field[..., 1, :, :] * 2 / w, field[..., 0, :, :] * 2 / h], dim=-1)
    return _identity_grid(h, w) + offset.reshape(-1, h, w, 2)


def elastic_draws(n_draws: int, num_control_points: int, max_displacement: float) -> torch.Tensor:
    """``(n_draws, 2, n, n)`` control-point displacements of :class:`RandomElastic2D`: uniform in
    ``[-max_displacement, max_displacement]``, the two outer rings 0 (TorchIO's ``locked_borders=2``)."""
    n = int(num_control_points)
    coarse = (torch.rand(n_draws, 2, n, n) * 2 - 1) * float(max_displacement)
    coarse[:, :, [0, 1, -2, -1], :] = 0
    coarse[:, :, :, [0, 1, -2, -1]] = 0
    return coarse


def _shape(subject: tio.Subject) -> tuple[int, int]:
    h, w = subject.spatial_shape[:2]
    return int(h), int(w)


class RandomAffine2D(tio.Transform):
    """Random in-plane rotation and per-axis scaling of a 2D subject about its centre (see the module doc).

    Args:
        degrees: the rotation is drawn uniformly in ``[-degrees, degrees]``.
        scales: each axis' scale is drawn uniformly in ``[1 - scales, 1 + scales]``.
    """

    def __init__(self, degrees: float, scales: float, **kwargs: Any):
        super().__init__(**kwargs)
        if degrees < 0 or not 0 <= scales < 1:
            raise ValueError(
                f"RandomAffine2D needs degrees >= 0 and 0 <= scales < 1, got {degrees}, {scales}"
            )
        self.degrees = float(degrees)
        self.scales = float(scales)

    def apply_transform(self, subject: tio.Subject) -> tio.Subject:
        h, w = _shape(subject)
        r = torch.rand(3)
        degrees = float(r[0] * 2 - 1) * self.degrees
        sx, sy = (1 + (float(v) * 2 - 1) * self.scales for v in r[1:])
        return warp_subject(subject, affine_grid_2d(h, w, degrees, sx, sy))


class RandomElastic2D(tio.Transform):
    """Random smooth displacement of a 2D subject from an ``n x n`` control grid (see the module doc).

    Args:
        num_control_points: control points per axis (>= 5, as TorchIO's default of 7 and its minimum).
        max_displacement: largest displacement of a control point along each axis, in voxels.
    """

    def __init__(self, num_control_points: int, max_displacement: float, **kwargs: Any):
        super().__init__(**kwargs)
        if num_control_points < 5 or max_displacement < 0:
            raise ValueError(
                "RandomElastic2D needs num_control_points >= 5 and max_displacement >= 0, "
                f"got {num_control_points}, {max_displacement}"
            )
        self.num_control_points = int(num_control_points)
        self.max_displacement = float(max_displacement)

    def apply_transform(self, subject: tio.Subject) -> tio.Subject:
        h, w = _shape(subject)
        coarse = elastic_draws(1, self.num_control_points, self.max_displacement)[0]
        return warp_subject(subject, elastic_grid_2d(h, w, coarse))
