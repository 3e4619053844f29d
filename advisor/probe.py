"""Probe sets: the user's images (and labels) that every model is scored on.

Formats, chosen from what the user points at:
- ``builtin:digits`` — scikit-learn's bundled 8×8 digits (1,797 images, 10 classes), offline;
- a ``.npz`` with an image array (``[N, H, W]`` grey or ``[N, H, W, 3]`` RGB, uint8 or float in
  [0, 1]) and a label array; keys ``<split>_images``/``<split>_labels`` (MedMNIST style) or
  ``images``/``x`` and ``labels``/``y``;
- a ``.csv`` with ``path,label`` rows (paths relative to the CSV; ``label`` may be empty);
- an ImageFolder tree ``root/<class>/<image>``, or ``root/<split>/<class>/<image>`` (``--split``);
- a flat folder of images: unlabelled.

A probe's ``hash`` covers the image bytes, the labels and the selection (split, max_images, seed),
not the preprocessing: features are keyed by probe hash *and* the model's preprocessing.
Image decoding happens only when features are extracted; corrupt images are then skipped with a
warning and recorded (see :meth:`Probe.without`), so a warm rerun needs no decoding at all.
"""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from advisor.errors import AdvisorError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
SPLIT_NAMES = ("train", "val", "valid", "validation", "test")


@dataclass(frozen=True)
class Probe:
    """A selected, labelled (or not) set of probe images.

    ``items[i]`` is a file path (str) or an int index into ``arrays``; ``labels`` is ``int64[N]``
    with classes ``0..C-1`` or None.
    """

    source: str
    items: tuple
    labels: np.ndarray | None
    class_names: tuple[str, ...] | None
    hash: str
    arrays: np.ndarray | None = field(default=None, repr=False, compare=False)
    skipped: tuple[tuple[str, str], ...] = ()

    def __len__(self) -> int:
        return len(self.items)

    @property
    def num_classes(self) -> int:
        return len(self.class_names) if self.class_names else 0

    def item_name(self, i: int) -> str:
        item = self.items[i]
        return item if isinstance(item, str) else f"{self.source}[{item}]"

    def load_image(self, i: int):
        """Decode image ``i`` as an RGB PIL image (raises on a corrupt file)."""
        from PIL import Image

        item = self.items[i]
        if isinstance(item, str):
            with Image.open(item) as im:
                im.load()
                return im.convert("RGB")
        arr = self.arrays[item]
        if arr.dtype != np.uint8:
            arr = np.clip(np.asarray(arr, dtype=np.float64) * 255.0, 0, 255).astype(np.uint8)
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


def load_probe(spec: str, *, split: str | None = "train", max_images: int | None = None, seed: int = 0) -> Probe:
    """Load the probe the user named. ``split`` picks ``root/<split>/`` in an ImageFolder tree (or
    the ``.npz`` split prefix) when there is one; ``max_images`` subsamples, stratified by class
    and seeded, so the same arguments always select the same images."""
    if max_images is not None and max_images < 1:
        raise AdvisorError(f"--max-images must be at least 1, got {max_images}", "pass a positive number or omit it")
    if spec.startswith("builtin:"):
        items, labels, names, arrays, digest = _builtin(spec)
    else:
        path = Path(spec).expanduser()
        if not path.exists():
            raise AdvisorError(f"probe '{spec}' does not exist", "pass a folder of images, a .csv, a .npz or builtin:digits")
        if path.is_file() and path.suffix.lower() == ".npz":
            items, labels, names, arrays, digest = _npz(path, split)
        elif path.is_file() and path.suffix.lower() == ".csv":
            items, labels, names, arrays, digest = _csv(path)
        elif path.is_dir():
            items, labels, names, arrays, digest = _folder(path, split)
        else:
            raise AdvisorError(f"probe '{spec}' is not a folder, .csv or .npz", "point at a folder of images, a path,label .csv, or an .npz")
    if len(items) == 0:
        raise AdvisorError(f"probe '{spec}' contains no images", f"add images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    selected = _subsample(labels, len(items), max_images, seed)
    items = tuple(items[i] for i in selected)
    labels = None if labels is None else labels[selected]
    if labels is not None and len(np.unique(labels)) < 2:
        raise AdvisorError(
            f"probe '{spec}' has a single class ({names[int(labels[0])]!r})",
            "transferability needs at least 2 classes: add sub-folders for the other classes, or pass an unlabelled flat folder",
        )
    h = hashlib.sha256()
    h.update(digest)
    h.update(np.asarray(selected, dtype=np.int64).tobytes())
    if labels is not None:
        h.update(labels.astype(np.int64).tobytes())
        h.update("\0".join(names).encode())
    return Probe(source=spec, items=items, labels=labels, class_names=names, hash=h.hexdigest()[:20], arrays=arrays)


def _subsample(labels, n: int, max_images: int | None, seed: int) -> np.ndarray:
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


def _file_digest(paths) -> bytes:
    h = hashlib.sha256()
    for p in paths:
        h.update(str(p).encode())
        h.update(hashlib.sha256(Path(p).read_bytes()).digest())
    return h.digest()


def _label_codes(raw: list[str]) -> tuple[np.ndarray, tuple[str, ...]]:
    names = tuple(sorted(set(raw), key=_natural_key))
    index = {n: i for i, n in enumerate(names)}
    return np.array([index[r] for r in raw], dtype=np.int64), names


def _natural_key(s: str):
    import re

    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", s)]


def _images_in(folder: Path) -> list[Path]:
    return sorted(
        (p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES),
        key=lambda p: _natural_key(p.name),
    )


def _folder(root: Path, split: str | None):
    subdirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    splits = [d for d in subdirs if d.name.lower() in SPLIT_NAMES]
    if splits:
        wanted = split or "train"
        match = [d for d in splits if d.name == wanted]
        if not match:
            raise AdvisorError(
                f"probe '{root}' has splits {[d.name for d in splits]} but no '{wanted}'",
                f"pass --split {splits[0].name}",
            )
        root = match[0]
        subdirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    flat = _images_in(root)
    if subdirs and not flat:
        paths, raw = [], []
        for d in subdirs:
            imgs = _images_in(d)
            paths += imgs
            raw += [d.name] * len(imgs)
        if not paths:
            raise AdvisorError(f"probe '{root}' has class folders but no images in them", f"image files must end in one of {', '.join(sorted(IMAGE_SUFFIXES))}")
        labels, names = _label_codes(raw)
        return [str(p) for p in paths], labels, names, None, _file_digest(paths)
    if not flat:
        anything = any(p.is_file() for p in root.iterdir())
        what = "no image files" if anything else "nothing"
        raise AdvisorError(f"probe folder '{root}' contains {what}", f"put images ({', '.join(sorted(IMAGE_SUFFIXES))}) in it, or one sub-folder per class")
    return [str(p) for p in flat], None, None, None, _file_digest(flat)


def _csv(path: Path):
    with path.open(newline="") as fh:
        rows = list(csv.reader(fh))
    if rows and [c.strip().lower() for c in rows[0][:2]] in (["path", "label"], ["path"]):
        rows = rows[1:]
    if not rows:
        raise AdvisorError(f"CSV probe '{path}' has no rows", "write one 'path,label' row per image")
    paths, raw = [], []
    for line_no, row in enumerate(rows, start=2):
        if not row or not row[0].strip():
            continue
        p = Path(row[0].strip())
        p = p if p.is_absolute() else path.parent / p
        if not p.is_file():
            raise AdvisorError(f"CSV probe '{path}' names a missing file '{row[0]}' (row {line_no})", "fix the path (relative paths are relative to the CSV) or remove the row")
        paths.append(p)
        raw.append(row[1].strip() if len(row) > 1 else "")
    has = [bool(r) for r in raw]
    if any(has) and not all(has):
        raise AdvisorError(f"CSV probe '{path}' labels some rows but not others", "give every row a label, or none")
    labels, names = _label_codes(raw) if all(has) else (None, None)
    return [str(p) for p in paths], labels, names, None, _file_digest(paths)


def _npz(path: Path, split: str | None):
    with np.load(path, allow_pickle=False) as data:
        keys = set(data.files)
        candidates = [(f"{split}_images", f"{split}_labels")] if split else []
        candidates += [("images", "labels"), ("x", "y"), ("X", "y"), ("train_images", "train_labels")]
        for ik, lk in candidates:
            if ik in keys:
                images = data[ik]
                labels = data[lk].reshape(-1).astype(np.int64) if lk in keys else None
                break
        else:
            raise AdvisorError(f"npz probe '{path}' has no image array (keys: {sorted(keys)})", f"name the arrays '{split or 'train'}_images'/'{split or 'train'}_labels' or 'images'/'labels'")
    if images.ndim not in (3, 4) or (images.ndim == 4 and images.shape[-1] not in (1, 3)):
        raise AdvisorError(f"npz probe '{path}': images have shape {images.shape}", "expected [N, H, W] (grey) or [N, H, W, 3] (RGB)")
    if labels is not None and len(labels) != len(images):
        raise AdvisorError(f"npz probe '{path}': {len(images)} images but {len(labels)} labels", "store one label per image")
    names = None
    if labels is not None:
        uniq = np.unique(labels)
        labels = np.searchsorted(uniq, labels).astype(np.int64)
        names = tuple(str(u) for u in uniq)
    digest = hashlib.sha256(np.ascontiguousarray(images).tobytes()).digest()
    return list(range(len(images))), labels, names, images, digest


def _builtin(spec: str):
    name = spec.split(":", 1)[1]
    if name != "digits":
        raise AdvisorError(f"unknown builtin probe '{spec}'", "the built-in probe is builtin:digits")
    from sklearn.datasets import load_digits

    d = load_digits()
    images = (d.images / 16.0 * 255.0).round().astype(np.uint8)  # 0..16 grey levels → 8-bit
    names = tuple(str(c) for c in d.target_names)
    digest = hashlib.sha256(images.tobytes()).digest()
    return list(range(len(images))), d.target.astype(np.int64), names, images, digest


def decode_all(probe: Probe, indices=None):
    """Decode images, returning ``(images, bad)`` where ``bad`` maps index → reason for the ones
    that fail to decode (corrupt or truncated files)."""
    images, bad = {}, {}
    for i in range(len(probe)) if indices is None else indices:
        try:
            images[i] = probe.load_image(i)
        except Exception as exc:
            bad[i] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}".strip()
    return images, bad

