"""Image decoding: every image reaches the models as 8-bit RGB, converted only where the meaning is
unambiguous and refused where it is not (see :func:`pixels_to_uint8` and :func:`to_rgb`).

- files: EXIF orientation is applied as viewers show it; 16-bit grey (PIL ``I;16``, and ``I`` from
  16-bit PNG/PNM) is scaled by its bit depth (``/ 257``); transparency (``RGBA``, ``LA``, ``P``
  with a transparent colour, ...) is composited on white, as a viewer on a white page shows it;
  ``1``, ``L``, ``P``, ``CMYK``, ``YCbCr``, ``LAB``, ``HSV`` through PIL's own conversion;
  32-bit float (``F``) only when its values lie in [0, 1]; 32-bit integer pixels (``I`` from
  TIFF) are refused (their range is not declared). An image that cannot be converted is skipped
  with its reason, like a corrupt file.
- arrays (``.npz`` probes): uint8 as is; uint16 scaled by its bit depth; bool as 0/255; other
  integers only within 0–255; floats only when finite and within [0, 1]. Anything else (NaN,
  floats in 0–255 or [−1, 1], ...) refuses the whole probe with the range found and the fix.

Decoding is bounded (see :data:`DECODE_SIDE`): an image whose shorter side exceeds the decode side
is decoded straight to a reduced size (JPEG DCT scaling via ``Image.draft``, else ``Image.reduce``),
keeping its shorter side in ``[side, 2 * side)``; smaller images are decoded exactly as stored.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from advisor.errors import AdvisorError

if TYPE_CHECKING:
    from advisor.data.probe import Probe

# Decoded images keep their shorter side below 2 × this (unless they are smaller): every catalog
# model and the usual timm ImageNet configs resize the shorter side to at most 512 px before
# cropping (224 / 0.875 = 256, 384 / 1.0, 448 / 1.0), so they are only ever *down*-sampled from it;
# ``advisor rank --img-size S`` raises it to 2 × S, and a model whose preprocessing needs more
# (``input_size / crop_pct`` > 512) gets its images decoded again at its own side
# (``advisor.ranking.decoding``). A camera photo (4000 × 3000) is decoded at 1000 × 750 instead
# of 36 MB of RGB. Images whose shorter side is at most this are decoded exactly as stored.
DECODE_SIDE = 512


def pixels_to_uint8(images: np.ndarray, where: str) -> np.ndarray:
    """An array of pixels as uint8, converted where the meaning is unambiguous and refused (one-line
    :class:`AdvisorError`) where it is not: uint8 as is; bool → 0/255; uint16 scaled by its bit depth
    (× 255 / 65535); other integers within 0–255 as 8-bit levels; floats finite and within [0, 1]
    (× 255, rounded). Never clips."""
    dt = images.dtype
    if dt == np.uint8:
        return images
    if dt == np.bool_:
        return images.astype(np.uint8) * np.uint8(255)
    if images.size == 0:
        return images.astype(np.uint8)
    if dt.kind in "iu":
        lo, hi = int(images.min()), int(images.max())
        if dt == np.uint16:
            if hi <= 255 and hi > 0:
                raise AdvisorError(f"{where} is uint16 but every value is at most {hi}: 8-bit pixels stored as 16-bit?",
                                   "store them as uint8 (x.astype(np.uint8)); true 16-bit images are scaled by 65535")
            return _chunked(images, lambda c: ((c.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8))
        if 0 <= lo and hi <= 255:
            return images.astype(np.uint8)
        raise AdvisorError(f"{where} holds {dt} pixels in [{lo}, {hi}]: neither 8-bit (0–255) nor a declared bit depth",
                           "store uint8 (0–255), uint16 (16-bit), or floats in [0, 1]")
    if dt.kind == "f":
        finite = _chunked_reduce(images, lambda c: int((~np.isfinite(c)).sum()))
        if finite:
            first = int(np.flatnonzero(~np.isfinite(images.reshape(len(images), -1)).all(axis=1))[0]) if images.ndim > 1 else 0
            raise AdvisorError(f"{where} has {finite} NaN/inf pixel value(s) (first in image {first})",
                               "fix or drop those images (advisor will not guess their pixels)")
        lo, hi = float(images.min()), float(images.max())
        if lo >= 0.0 and hi <= 1.0:
            return _chunked(images, lambda c: np.round(c.astype(np.float64) * 255.0).astype(np.uint8))
        if lo >= 0.0 and hi <= 255.0:
            fix = "these look like 0–255 levels: divide by 255 (or store uint8)"
        elif lo >= -1.0 and hi <= 1.0:
            fix = "these look like [-1, 1]: store (x + 1) / 2"
        else:
            fix = "rescale to [0, 1] (or store uint8 0–255)"
        raise AdvisorError(f"{where} holds floats in [{lo:.4g}, {hi:.4g}]; float pixels must lie in [0, 1]", fix)
    raise AdvisorError(f"{where} holds {dt} values, not pixels", "store uint8 (0–255), uint16, or floats in [0, 1]")


def _chunked(images: np.ndarray, fn, rows: int = 256) -> np.ndarray:
    if images.ndim == 0 or len(images) <= rows:
        return fn(images)
    return np.concatenate([fn(images[i:i + rows]) for i in range(0, len(images), rows)])


def _chunked_reduce(images: np.ndarray, fn, rows: int = 256) -> int:
    if images.ndim == 0 or len(images) <= rows:
        return fn(images)
    return sum(fn(images[i:i + rows]) for i in range(0, len(images), rows))


def iter_images(probe: Probe, indices=None):
    """Decode images one at a time: yields ``(index, image, None)`` or ``(index, None, reason)`` for
    an image that fails to decode (corrupt, truncated or unconvertible file)."""
    for i in range(len(probe)) if indices is None else indices:
        try:
            im = probe.load_image(i)
        except Exception as exc:
            yield i, None, f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}".strip()
            continue
        yield i, im, None


def decode_all(probe: Probe, indices=None, *, keep_bytes: int | None = None):
    """Decode images, returning ``(images, bad)`` where ``bad`` maps index → reason for the ones
    that fail to decode (corrupt, truncated or unconvertible files). With ``keep_bytes``, ``images``
    keeps decoded images only while their total size stays within it (the rest are decoded, checked
    and dropped), so memory does not grow with the probe."""
    images, bad, kept = {}, {}, 0
    for i, im, reason in iter_images(probe, indices):
        if im is None:
            bad[i] = reason
            continue
        size = im.width * im.height * len(im.getbands())
        if keep_bytes is None or kept + size <= keep_bytes:
            images[i] = im
            kept += size
    return images, bad


# ---------------------------------------------------------------- decoding files


def open_image(path, min_side: int | None = DECODE_SIDE):
    """Decode an image file as 8-bit RGB as a viewer shows it (EXIF orientation applied, see
    :func:`to_rgb`), reduced while decoding so that its shorter side stays below ``2 * min_side``
    when it is larger than ``min_side`` (``None``: full size)."""
    import warnings

    from PIL import Image, ImageOps

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PIL's warnings about odd EXIF/metadata: the pixels are what counts
        with Image.open(path) as im:
            if min_side and im.format == "JPEG":
                w, h = im.size
                short = min(w, h)
                if short > min_side:  # DCT scaling: 1/2, 1/4 or 1/8 while decoding, never below min_side
                    im.draft(None, (-(-w * min_side // short), -(-h * min_side // short)))
            im.load()
            info = _declared_bits(im)
            try:
                ImageOps.exif_transpose(im, in_place=True)
            except Exception:  # unreadable EXIF: show it as stored
                pass
            rgb = to_rgb(im, bits=info)
    if min_side:
        k = min(rgb.size) // min_side
        if k >= 2:
            rgb = rgb.reduce(k)
    return rgb


def _declared_bits(im) -> int | None:
    """Bits per sample the file declares for integer grey pixels (``I``/``I;16``): TIFF's
    BitsPerSample, 16 for PNG/PNM (PIL scales PNM maxval to 16 bits), else None (unknown)."""
    if not (im.mode == "I" or im.mode.startswith("I;16")):
        return None
    tags = getattr(im, "tag_v2", None)
    if tags is not None and 258 in tags:
        bits = tags[258]
        return int(bits[0] if isinstance(bits, tuple) else bits)
    if im.mode.startswith("I;16") or im.format in ("PNG", "PPM"):
        return 16
    return None


ALPHA_MODES = {"RGBA", "RGBa", "LA", "La", "PA"}


def to_rgb(im, bits: int | None = None):
    """A PIL image of any mode as 8-bit RGB, or ``ValueError`` where its pixels have no unambiguous
    meaning. 16-bit grey is scaled by its bit depth (``bits``, default 16 for ``I;16``); alpha and
    ``P`` with a transparent colour are composited on white; ``F`` must lie in [0, 1]; ``I``
    needs a declared bit depth of at most 16."""
    from PIL import Image

    mode = im.mode
    if mode == "RGB":
        return im
    if mode == "I" or mode.startswith("I;16"):
        bits = bits or (16 if mode.startswith("I;16") else None)
        if bits is None or bits > 16:
            raise ValueError(f"{bits or 'undeclared'}-bit integer pixels: their range is ambiguous; save as 8- or 16-bit")
        arr = np.asarray(im).astype(np.int64)
        top = (1 << bits) - 1
        if arr.size and (arr.min() < 0 or arr.max() > top):
            raise ValueError(f"pixel values [{arr.min()}, {arr.max()}] exceed the declared {bits}-bit range")
        return Image.fromarray(((arr * 255 + top // 2) // top).astype(np.uint8), "L").convert("RGB")
    if mode == "F":
        arr = np.asarray(im, dtype=np.float64)
        if not np.isfinite(arr).all():
            raise ValueError("float pixels include NaN/inf")
        lo, hi = (float(arr.min()), float(arr.max())) if arr.size else (0.0, 0.0)
        if lo < 0.0 or hi > 1.0:
            raise ValueError(f"float pixels span [{lo:.4g}, {hi:.4g}], not [0, 1]: rescale to [0, 1] or save as 8-bit")
        return Image.fromarray(np.round(arr * 255.0).astype(np.uint8), "L").convert("RGB")
    if mode in ALPHA_MODES or (mode in ("P", "L", "RGB") and "transparency" in im.info):
        rgba = im.convert("RGBA") if mode != "La" else im.convert("RGBa").convert("RGBA")
        white = Image.new("RGBA", im.size, (255, 255, 255, 255))
        white.alpha_composite(rgba)
        return white.convert("RGB")
    return im.convert("RGB")
