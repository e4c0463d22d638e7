"""Synthetic BraTS-like studies (for tests, demos and offline runs; no real data needed).

Each case is a brain phantom on a ``shape`` grid, written as a BraTS 2018 case folder::

    OUT/Brats18_SYN_0001_1/Brats18_SYN_0001_1_{flair,t1,t1ce,t2,seg}.nii.gz

Phantom model (all random draws from ``numpy.random.default_rng([seed, case_index])``, so a
case does not depend on how many cases are written, and the same seed gives the same bytes):

* **brain**: an ellipsoid, semi-axes 0.78–0.9 of the half field of view, with a smooth random
  boundary deformation; voxels outside it are exactly 0 in every modality (the brain mask);
* **tissue**: a smooth Gaussian random field mixes white matter (WM) and grey matter (GM),
  plus cerebrospinal fluid (CSF) in a cortical rim and two ventricles;
* **tumour**: nested shells of a common, randomly rotated, anisotropic and irregular distance
  ``d`` from a random centre inside the brain: necrotic core ``d < r_n`` (label 1; absent in
  about a quarter of the cases), enhancing rim ``r_n ≤ d < r_e`` (label 4) and an oedema halo
  ``d < r_e`` or ``d' < r_o`` (label 2, with its own, more irregular distance ``d'``);
  sizes ``r_o`` = 0.35–0.65 of the smallest brain semi-axis, ``r_e`` = 0.5–0.8 ``r_o``,
  ``r_n`` = 0.55–0.85 ``r_e``;  all clipped to the brain;
* **contrast**: each modality is ``Σ_t f_t · c_{m,t}`` over tissue fractions ``f_t`` (tumour
  fractions blurred with σ = 0.5 voxel for partial volume) with the relative intensities below
  (oedema bright on FLAIR/T2, enhancing rim bright on T1ce, necrosis dark on T1/T1ce and bright
  on T2), times a smooth multiplicative bias field, with Rician noise (σ = 0.03), scaled to a
  modality-specific range and stored as int16 like the real data (≥ 1 inside the brain);
* **geometry**: isotropic spacing 0.95–1.05 mm, x and y axes flipped and a non-zero origin,
  as in the real BraTS affines ``diag(−1, −1, 1)``.

===========  ====  ====  ====  =======  ========  ========
modality      WM    GM   CSF   oedema   enhanc.   necrosis
===========  ====  ====  ====  =======  ========  ========
FLAIR        0.55  0.65  0.10   1.00     0.80      0.45
T1ce         0.75  0.55  0.15   0.50     1.60      0.20
T1           0.80  0.60  0.15   0.45     0.55      0.25
T2           0.40  0.55  1.00   0.95     0.75      1.10
===========  ====  ====  ====  =======  ========  ========
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter
from scipy.spatial.transform import Rotation
from tqdm import tqdm

from .labels import MODALITIES
from .nifti import write_nifti_atomic

DEFAULT_SHAPE: tuple[int, int, int] = (64, 64, 48)
DEFAULT_CASES = 8
MIN_SIDE = 16

#: tissue classes of the contrast table (order of the columns)
TISSUES: tuple[str, ...] = ("wm", "gm", "csf", "oedema", "enhancing", "necrosis")
CONTRAST: dict[str, tuple[float, ...]] = {
    "flair": (0.55, 0.65, 0.10, 1.00, 0.80, 0.45),
    "t1ce": (0.75, 0.55, 0.15, 0.50, 1.60, 0.20),
    "t1": (0.80, 0.60, 0.15, 0.45, 0.55, 0.25),
    "t2": (0.40, 0.55, 1.00, 0.95, 0.75, 1.10),
}
#: intensity range of the stored int16 modality (value of contrast 1.0)
SCALE: dict[str, float] = {"flair": 450.0, "t1ce": 900.0, "t1": 650.0, "t2": 1100.0}
NOISE_SIGMA = 0.03
#: BraTS label value of each tumour tissue
TUMOUR_LABELS: dict[str, int] = {"oedema": 2, "enhancing": 4, "necrosis": 1}


@dataclass(frozen=True)
class SyntheticCase:
    """One phantom: ``images[m]`` int16 ``(X, Y, Z)`` per modality, ``seg`` uint8 BraTS values."""

    images: dict[str, np.ndarray]
    seg: np.ndarray
    affine: np.ndarray
    brain: np.ndarray


def case_id(index: int) -> str:
    """BraTS 2018-style id of the ``index``-th (0-based) synthetic case."""
    return f"Brats18_SYN_{index + 1:04d}_1"


def _smooth_field(rng: np.random.Generator, shape: tuple[int, ...], sigma: float) -> np.ndarray:
    """Gaussian random field: white noise blurred with ``sigma`` voxels, scaled to unit std."""
    field = gaussian_filter(rng.standard_normal(shape), sigma=sigma, mode="wrap")
    return field / max(float(field.std()), 1e-12)


def _check_shape(shape: Sequence[int]) -> tuple[int, int, int]:
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3 or min(shape) < MIN_SIDE:
        raise ValueError(f"shape must be three ints >= {MIN_SIDE}, got {shape}")
    return shape  # type: ignore[return-value]


def _affine(rng: np.random.Generator, shape: tuple[int, int, int]) -> np.ndarray:
    spacing = round(float(rng.uniform(0.95, 1.05)), 3)
    offset = rng.integers(-8, 9, size=3).astype(float)
    affine = np.diag([-spacing, -spacing, spacing, 1.0])
    affine[:3, 3] = [offset[0], (shape[1] - 1) * spacing + offset[1], offset[2]]
    return affine


def make_synthetic_case(shape: Sequence[int], rng: np.random.Generator) -> SyntheticCase:
    """Draw one phantom (see the module docstring for the model)."""
    shape = _check_shape(shape)
    centre = (np.asarray(shape) - 1) / 2.0
    grid = np.stack(np.meshgrid(*[np.arange(s, dtype=np.float64) for s in shape], indexing="ij"), axis=-1)
    coarse = max(min(shape) / 8.0, 1.5)

    # brain: deformed ellipsoid, r < 1
    semi = rng.uniform(0.78, 0.9, size=3) * (np.asarray(shape) / 2.0)
    r_brain = np.linalg.norm((grid - centre) / semi, axis=-1) + 0.04 * _smooth_field(rng, shape, coarse)
    brain = r_brain < 1.0

    # tissue fractions
    wm = 1.0 / (1.0 + np.exp(-_smooth_field(rng, shape, coarse / 2.0) / 0.35))
    csf = np.clip((r_brain - 0.86) / 0.14, 0.0, 1.0) * 0.8
    for side in (-1.0, 1.0):
        v_centre = centre + np.array([side * 0.12 * shape[0], 0.05 * shape[1], 0.0])
        v_semi = np.array([0.05, 0.16, 0.12]) * np.asarray(shape)
        csf = np.maximum(csf, (np.linalg.norm((grid - v_centre) / v_semi, axis=-1) < 1.0) * 0.95)

    # tumour: nested shells of one irregular distance
    seg = np.zeros(shape, dtype=np.uint8)
    while True:  # a centre well inside the brain
        t_centre = centre + rng.uniform(-0.5, 0.5, size=3) * semi
        if np.linalg.norm((t_centre - centre) / semi) < 0.55:
            break
    rotation = Rotation.from_rotvec(rng.normal(size=3) * rng.uniform(0, np.pi)).as_matrix()
    stretch = rng.uniform(0.75, 1.3, size=3)
    local = (grid - t_centre) @ rotation.T / stretch
    d = np.linalg.norm(local, axis=-1) * (1.0 + 0.12 * _smooth_field(rng, shape, coarse / 2.0))
    d_oedema = d * (1.0 + 0.25 * _smooth_field(rng, shape, coarse / 2.0))
    r_o = rng.uniform(0.35, 0.65) * semi.min()
    r_e = max(rng.uniform(0.5, 0.8) * r_o, 1.5)
    r_n = rng.uniform(0.55, 0.85) * r_e if rng.random() > 0.25 else 0.0
    seg[brain & ((d_oedema < r_o) | (d < r_e))] = TUMOUR_LABELS["oedema"]
    seg[brain & (d < r_e)] = TUMOUR_LABELS["enhancing"]
    seg[brain & (d < r_n)] = TUMOUR_LABELS["necrosis"]

    tumour = {name: gaussian_filter((seg == value).astype(np.float64), 0.5) for name, value in TUMOUR_LABELS.items()}
    healthy = np.clip(1.0 - sum(tumour.values()), 0.0, 1.0)
    csf_h = healthy * csf
    fractions = {
        "wm": (healthy - csf_h) * wm,
        "gm": (healthy - csf_h) * (1.0 - wm),
        "csf": csf_h,
        **tumour,
    }

    images: dict[str, np.ndarray] = {}
    for modality in MODALITIES:
        signal = sum(fractions[t] * c for t, c in zip(TISSUES, CONTRAST[modality]))
        signal = signal * np.exp(0.08 * _smooth_field(rng, shape, coarse * 1.5))
        noisy = np.hypot(signal + rng.normal(0, NOISE_SIGMA, shape), rng.normal(0, NOISE_SIGMA, shape))
        scaled = np.rint(noisy * SCALE[modality] * rng.uniform(0.9, 1.1))
        images[modality] = np.where(brain, np.clip(scaled, 1, np.iinfo(np.int16).max), 0).astype(np.int16)
    return SyntheticCase(images=images, seg=seg, affine=_affine(rng, shape), brain=brain)


def write_case_folder(case_dir: str | os.PathLike, case: SyntheticCase, suffix: str = ".nii.gz") -> Path:
    """Write ``case`` as ``case_dir/<name>_{flair,t1,t1ce,t2,seg}<suffix>`` (BraTS 2018–2021)."""
    case_dir = Path(case_dir)
    name = case_dir.name
    for modality in MODALITIES:
        write_nifti_atomic(case_dir / f"{name}_{modality}{suffix}", case.images[modality], case.affine)
    write_nifti_atomic(case_dir / f"{name}_seg{suffix}", case.seg, case.affine)
    return case_dir


def write_synthetic_brats(
    out: str | os.PathLike,
    cases: int = DEFAULT_CASES,
    shape: Sequence[int] = DEFAULT_SHAPE,
    seed: int = 0,
    progress: bool = True,
) -> list[Path]:
    """Write ``cases`` phantoms as BraTS 2018 case folders under ``out``; return the folders."""
    if int(cases) < 1:
        raise ValueError(f"cases must be >= 1, got {cases}")
    shape = _check_shape(shape)
    out = Path(out)
    written = []
    for index in tqdm(range(int(cases)), desc="synth-brats", unit="case", disable=not progress):
        case = make_synthetic_case(shape, np.random.default_rng([int(seed), index]))
        written.append(write_case_folder(out / case_id(index), case))
    return written
