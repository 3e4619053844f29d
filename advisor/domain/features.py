"""The 22 hand-crafted, category-agnostic domain features per image of Chen et al. 2022 ("Datasets and
Metrics"), pure numpy / scikit-image.

The mean and standard deviation of each RGB channel (pixel values in [0, 1]), and four grey-level
co-occurrence (GLCM) properties — angular second moment, entropy, contrast, inverse difference
moment (scikit-image's *homogeneity*) — at 4 directions (0°, 45°, 90°, 135°, distance 1 pixel,
symmetric, normalised). Grey levels are quantised to :data:`GLCM_LEVELS` = 32 (a 32×32
co-occurrence matrix: 1,000 images take a few seconds, most of it JPEG decoding; 256 levels gives a
256×256 matrix that is mostly empty on small images and 64× more work per property). Entropy is
computed here with the natural log on the normalised GLCM (``-Σ p ln p``, zeros skipped) because
``graycoprops`` only has it from scikit-image 0.25. Images are read as RGB (grey images replicate one
channel), and downscaled (area resampling) so the longer side is at most :data:`MAX_SIDE` pixels:
texture is measured at the scale a network sees, and a 6,000-pixel photo does not take a minute.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

GLCM_LEVELS = 32
MAX_SIDE = 512
ANGLES = (0.0, np.pi / 4, np.pi / 2, 3 * np.pi / 4)
ANGLE_NAMES = ("0", "45", "90", "135")
GLCM_PROPS = ("asm", "entropy", "contrast", "idm")
FEATURE_NAMES = tuple(
    [f"mean_{c}" for c in "rgb"] + [f"std_{c}" for c in "rgb"]
    + [f"{p}_{a}" for p in GLCM_PROPS for a in ANGLE_NAMES]
)
FEATURES_VERSION = "1"  # bump when the feature definition changes: stored references carry it


def rgb_array(image) -> np.ndarray:
    """An image (PIL, or array [H, W] / [H, W, 1] / [H, W, 3]: uint8, uint16 or float in [0, 1], see
    :func:`advisor.data.images.pixels_to_uint8`) as uint8 [H, W, 3], downscaled so the longer side is at most MAX_SIDE."""
    from PIL import Image

    if isinstance(image, Image.Image):
        im = image.convert("RGB")
    else:
        arr = np.asarray(image)
        if arr.ndim == 3 and arr.shape[-1] == 1:
            arr = arr[..., 0]
        if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[-1] != 3):
            raise ValueError(f"an image must be [H, W] or [H, W, 3], got shape {arr.shape}")
        from advisor.data.images import pixels_to_uint8

        im = Image.fromarray(pixels_to_uint8(arr, "an image")).convert("RGB")  # refuses NaN or floats outside [0, 1]
    if max(im.size) > MAX_SIDE:
        scale = MAX_SIDE / max(im.size)
        im = im.resize((max(1, round(im.size[0] * scale)), max(1, round(im.size[1] * scale))), Image.Resampling.BOX)
    return np.asarray(im, dtype=np.uint8)


def glcm_features(grey_levels: np.ndarray, levels: int = GLCM_LEVELS) -> np.ndarray:
    """The 16 texture features of one quantised grey image (ints in ``0..levels-1``), ordered
    property-major: ASM, entropy, contrast, IDM, each at 0°, 45°, 90°, 135°."""
    from skimage.feature import graycomatrix, graycoprops

    P = graycomatrix(grey_levels, distances=[1], angles=list(ANGLES), levels=levels, symmetric=True, normed=True)
    asm = graycoprops(P, "ASM")[0]
    contrast = graycoprops(P, "contrast")[0]
    idm = graycoprops(P, "homogeneity")[0]  # Σ p(i,j) / (1 + (i-j)²): the inverse difference moment
    logs = np.log(P, where=P > 0, out=np.zeros_like(P))
    entropy = -np.sum(P * logs, axis=(0, 1))[0]
    return np.concatenate([asm, entropy, contrast, idm])


def image_features(image) -> np.ndarray:
    """The 22 domain features of one image, ordered as :data:`FEATURE_NAMES`."""
    rgb = rgb_array(image)
    px = rgb.reshape(-1, 3).astype(np.float64) / 255.0
    levels = np.asarray(grey(rgb), dtype=np.int64)
    q = (levels * GLCM_LEVELS) // 256  # 0..255 → 0..GLCM_LEVELS-1, equal-width bins
    return np.concatenate([px.mean(axis=0), px.std(axis=0), glcm_features(q.astype(np.uint8))])


def grey(rgb: np.ndarray) -> np.ndarray:
    """ITU-R 601-2 luma (PIL's "L"), uint8."""
    from PIL import Image

    return np.asarray(Image.fromarray(rgb).convert("L"))


def domain_features(images: Iterable) -> np.ndarray:
    """float64[N, 22]: :func:`image_features` of every image (PIL images or arrays)."""
    rows = [image_features(im) for im in images]
    if not rows:
        return np.zeros((0, len(FEATURE_NAMES)))
    return np.stack(rows)
