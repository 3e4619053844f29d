"""Probe sets: the user's images (and labels) that every model is scored on.

Formats, chosen from what the user points at: a folder (ImageFolder tree, with or without split
folders, or flat and unlabelled), a ``path,label`` ``.csv``, an ``.npz`` of arrays, or ``builtin:digits``
(read by :mod:`advisor.data.readers`; images decoded and pixels converted by :mod:`advisor.data.images`).

A probe's ``hash`` covers the image bytes, the labels and the selection (split, max_images, seed),
not the preprocessing: features are keyed by probe hash *and* the model's preprocessing.
Image decoding happens only when features are extracted; corrupt images are then skipped with a
warning and recorded (see :meth:`Probe.without`), so a warm rerun needs no decoding at all.
"""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

# the data package's front door: what callers have always imported from here
from advisor.data.images import DECODE_SIDE, decode_all, iter_images, open_image, pixels_to_uint8, to_rgb
from advisor.data.readers import IMAGE_SUFFIXES, SPLIT_NAMES, read_builtin, read_csv, read_folder, read_npz
from advisor.errors import AdvisorError

__all__ = ["DECODE_SIDE", "DECODE_VERSION", "IMAGE_SUFFIXES", "SPLIT_NAMES", "Probe", "decode_all", "iter_images", "load_probe",
           "open_image", "pixels_to_uint8", "subsample_indices", "to_rgb"]

# Part of every probe hash: features cached before a change to how pixels are decoded (16-bit,
# EXIF orientation, alpha, reduced decoding) are not reused.
DECODE_VERSION = b"decode-2"


@dataclass(frozen=True)
class Probe:
    """A selected, labelled (or not) set of probe images.

    ``items[i]`` is a file path (str) or an int index into ``arrays``; ``labels`` is ``int64[N]``
    with classes ``0..C-1`` or None.
    """

    spec: str  # what the user named: the target data's path, or builtin:digits
    items: tuple
    labels: np.ndarray | None
    class_names: tuple[str, ...] | None
    hash: str
    arrays: np.ndarray | None = field(default=None, repr=False, compare=False)
    skipped: tuple[tuple[str, str], ...] = ()
    decode_side: int | None = field(default=DECODE_SIDE, compare=False)  # see DECODE_SIDE; None: full size

    def __len__(self) -> int:
        return len(self.items)

    @property
    def source(self) -> str:
        """Deprecated name of :attr:`spec` (it is the *target* data, not a source model's)."""
        warnings.warn("Probe.source is now Probe.spec; the old name goes in the next release", DeprecationWarning, stacklevel=2)
        return self.spec

    @property
    def num_classes(self) -> int:
        return len(self.class_names) if self.class_names else 0

    def item_name(self, i: int) -> str:
        item = self.items[i]
        return item if isinstance(item, str) else f"{self.spec}[{item}]"

    def load_image(self, i: int):
        """Decode image ``i`` as an 8-bit RGB PIL image (raises on a corrupt or unconvertible file),
        reduced while decoding when its shorter side exceeds ``decode_side`` (see :data:`DECODE_SIDE`)."""
        from PIL import Image

        item = self.items[i]
        if isinstance(item, str):
            return open_image(item, self.decode_side)
        arr = self.arrays[item]  # uint8, converted and checked by load_probe
        if arr.ndim == 3 and arr.shape[-1] == 1:
            arr = arr[..., 0]
        return Image.fromarray(arr).convert("RGB")

    def without(self, bad: dict[int, str]) -> "Probe":
        """This probe minus the images at the indices in ``bad`` (index → reason). Hash unchanged:
        which images are corrupt is a function of their bytes, which the hash already covers."""
        if not bad:
            return self
        keep = [i for i in range(len(self)) if i not in bad]
        skipped = self.skipped + tuple((self.item_name(i), reason) for i, reason in sorted(bad.items()))
        return replace(
            self,
            items=tuple(self.items[i] for i in keep),
            labels=None if self.labels is None else self.labels[keep],
            skipped=skipped,
        )

    def summary(self) -> str:
        classes = f"{self.num_classes} classes" if self.labels is not None else "unlabelled"
        return f"{len(self)} images, {classes}"


def load_probe(spec: str, *, split: str | None = "train", max_images: int | None = None, seed: int = 0,
               min_classes: int = 2) -> Probe:
    """Load the probe the user named. ``split`` picks ``root/<split>/`` in an ImageFolder tree (or
    the ``.npz`` split prefix) when there is one; a split other than ``train`` (the default) on data
    without splits is an error. ``max_images`` subsamples, stratified by class and seeded, so the
    same arguments always select the same images. A labelled probe needs ``min_classes`` classes
    (label-free uses such as ``advisor domain`` pass 1)."""
    if max_images is not None and max_images < 1:
        raise AdvisorError(f"--max-images must be at least 1, got {max_images}", "pass a positive number or omit it")
    if spec.startswith("builtin:"):
        items, labels, names, arrays, digest = read_builtin(spec)
    else:
        path = Path(spec).expanduser()
        if not path.exists():
            raise AdvisorError(f"probe '{spec}' does not exist", "pass a folder of images, a .csv, a .npz or builtin:digits")
        if path.is_file() and path.suffix.lower() == ".npz":
            items, labels, names, arrays, digest = read_npz(path, split)
        elif path.is_file() and path.suffix.lower() == ".csv":
            items, labels, names, arrays, digest = read_csv(path, split)
        elif path.is_dir():
            items, labels, names, arrays, digest = read_folder(path, split)
        else:
            raise AdvisorError(f"probe '{spec}' is not a folder, .csv or .npz", "point at a folder of images, a path,label .csv, or an .npz")
    if len(items) == 0:
        raise AdvisorError(f"probe '{spec}' contains no images", f"add images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    selected = subsample_indices(labels, len(items), max_images, seed)
    items = tuple(items[i] for i in selected)
    labels = None if labels is None else labels[selected]
    if labels is not None and len(np.unique(labels)) < min_classes:
        raise AdvisorError(
            f"probe '{spec}' has a single class ({names[int(labels[0])]!r})",
            "transferability needs at least 2 classes: add sub-folders for the other classes, or pass an unlabelled flat folder",
        )
    h = hashlib.sha256()
    h.update(DECODE_VERSION)
    h.update(digest)
    h.update(np.asarray(selected, dtype=np.int64).tobytes())
    if labels is not None:
        h.update(labels.astype(np.int64).tobytes())
        h.update("\0".join(names).encode())
    return Probe(spec=spec, items=items, labels=labels, class_names=names, hash=h.hexdigest()[:20], arrays=arrays)


def subsample_indices(labels, n: int, max_images: int | None, seed: int) -> np.ndarray:
    """Indices of a seeded subsample of at most ``max_images``, stratified by label (each class keeps
    its share, at least one image), in the original order."""
    if max_images is None or max_images >= n:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    if labels is None:
        return np.sort(rng.choice(n, size=max_images, replace=False))
    classes, counts = np.unique(labels, return_counts=True)
    quota = np.maximum(1, np.floor(counts * max_images / n)).astype(int)
    # hand out what flooring left over to the classes with the largest remainders
    remainder = counts * max_images / n - np.floor(counts * max_images / n)
    for c in np.argsort(-remainder, kind="stable"):
        if quota.sum() >= max_images:
            break
        if quota[c] < counts[c]:
            quota[c] += 1
    picked = [rng.choice(np.flatnonzero(labels == c), size=q, replace=False) for c, q in zip(classes, quota)]
    return np.sort(np.concatenate(picked))
