"""Probe sets: the user's images (and labels) that every model is scored on.

Formats, chosen from what the user points at:
- ``builtin:digits`` — scikit-learn's bundled 8×8 digits (1,797 images, 10 classes), offline;
- a ``.npz`` with an image array (``[N, H, W]`` grey or ``[N, H, W, 3]`` RGB) and a label array
  (ints, bools or strings; ``[N]``, ``[N, 1]`` or one-hot ``[N, C]``); keys
  ``<split>_images``/``<split>_labels`` (MedMNIST style) or ``images``/``x`` and ``labels``/``y``;
- a ``.csv`` with ``path,label`` rows (paths relative to the CSV; ``label`` may be empty; a header
  row and an Excel byte-order mark are recognised);
- an ImageFolder tree ``root/<class>/<image>``, or ``root/<split>/<class>/<image>`` (``--split``);
- a flat folder of images: unlabelled.

A probe's ``hash`` covers the image bytes, the labels and the selection (split, max_images, seed),
not the preprocessing: features are keyed by probe hash *and* the model's preprocessing.
Image decoding happens only when features are extracted; corrupt images are then skipped with a
warning and recorded (see :meth:`Probe.without`), so a warm rerun needs no decoding at all.

Pixels (see :func:`pixels_to_uint8` and :func:`to_rgb`): every image reaches the models as 8-bit
RGB, converted only where the meaning is unambiguous and refused where it is not.

- files: EXIF orientation is applied as viewers show it; 16-bit grey (PIL ``I;16``, and ``I`` from
  16-bit PNG/PNM) is scaled by its bit depth (``/ 257``); transparency (``RGBA``, ``LA``, ``P``
  with a transparent colour, ...) is composited on white, as a viewer on a white page shows it;
  ``1``, ``L``, ``P``, ``CMYK``, ``YCbCr``, ``LAB``, ``HSV`` through PIL's own conversion;
  32-bit float (``F``) only when its values lie in [0, 1]; 32-bit integer pixels (``I`` from
  TIFF) are refused (their range is not declared). An image that cannot be converted is skipped
  with its reason, like a corrupt file.
- ``.npz`` arrays: uint8 as is; uint16 scaled by its bit depth; bool as 0/255; other integers
  only within 0–255; floats only when finite and within [0, 1]. Anything else (NaN, floats in
  0–255 or [−1, 1], ...) refuses the whole probe with the range found and the fix.

Decoding is bounded (see :data:`DECODE_SIDE`): an image whose shorter side exceeds the decode side
is decoded straight to a reduced size (JPEG DCT scaling via ``Image.draft``, else ``Image.reduce``),
keeping its shorter side in ``[side, 2 * side)``; smaller images are decoded exactly as stored.
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
# Decoded images keep their shorter side below 2 × this (unless they are smaller): every catalog
# model and the usual timm ImageNet configs resize the shorter side to at most 512 px before
# cropping (224 / 0.875 = 256, 384 / 1.0, 448 / 1.0), so they are only ever *down*-sampled from it;
# ``advisor rank --img-size S`` raises it to 2 × S, and a model whose preprocessing needs more
# (``input_size / crop_pct`` > 512) gets its images decoded again at its own side
# (``ranking._Decoded.for_model``). A camera photo (4000 × 3000) is decoded at 1000 × 750 instead
# of 36 MB of RGB. Images whose shorter side is at most this are decoded exactly as stored.
DECODE_SIDE = 512
# Part of every probe hash: features cached before a change to how pixels are decoded (16-bit,
# EXIF orientation, alpha, reduced decoding) are not reused.
DECODE_VERSION = b"decode-2"


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
    decode_side: int | None = field(default=DECODE_SIDE, compare=False)  # see DECODE_SIDE; None: full size

    def __len__(self) -> int:
        return len(self.items)

    @property
    def num_classes(self) -> int:
        return len(self.class_names) if self.class_names else 0

    def item_name(self, i: int) -> str:
        item = self.items[i]
        return item if isinstance(item, str) else f"{self.source}[{item}]"

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
        items, labels, names, arrays, digest = _builtin(spec)
    else:
        path = Path(spec).expanduser()
        if not path.exists():
            raise AdvisorError(f"probe '{spec}' does not exist", "pass a folder of images, a .csv, a .npz or builtin:digits")
        if path.is_file() and path.suffix.lower() == ".npz":
            items, labels, names, arrays, digest = _npz(path, split)
        elif path.is_file() and path.suffix.lower() == ".csv":
            items, labels, names, arrays, digest = _csv(path, split)
        elif path.is_dir():
            items, labels, names, arrays, digest = _folder(path, split)
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
    return Probe(source=spec, items=items, labels=labels, class_names=names, hash=h.hexdigest()[:20], arrays=arrays)


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


def _no_split(what: str, split: str | None, found: str, fix: str) -> None:
    """``--split X`` (other than the default ``train``) on data that has no splits is an error, not ignored."""
    if split not in (None, "train"):
        raise AdvisorError(f"--split {split}: {what} has no split folders or arrays ({found})", fix)


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
    else:
        shown = ", ".join(d.name + "/" for d in subdirs[:8]) + (" ..." if len(subdirs) > 8 else "")
        _no_split(f"probe folder '{root}'", split, f"it holds {shown or 'no sub-folders'}",
                  f"drop --split to use all of it, or arrange it as {root}/{split}/<class>/<image>")
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
    if flat and any(_images_in(d) for d in subdirs):
        with_images = [d.name for d in subdirs if _images_in(d)]
        raise AdvisorError(
            f"probe folder '{root}' mixes {len(flat)} loose image(s) with class folders ({', '.join(with_images[:5])}"
            f"{' ...' if len(with_images) > 5 else ''}): it is neither labelled nor unlabelled",
            "move the loose images into their class folders (labelled probe), or the class folders' images out (unlabelled)")
    if not flat:
        anything = any(p.is_file() for p in root.iterdir())
        what = "no image files" if anything else "nothing"
        raise AdvisorError(f"probe folder '{root}' contains {what}", f"put images ({', '.join(sorted(IMAGE_SUFFIXES))}) in it, or one sub-folder per class")
    return [str(p) for p in flat], None, None, None, _file_digest(flat)


def _csv(path: Path, split: str | None = None):
    _no_split(f"CSV probe '{path}'", split, "a CSV is one list of images", "drop --split, or write one CSV per split")
    try:
        # utf-8-sig: a CSV saved by Excel starts with a byte-order mark, which must not become part of the header
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise AdvisorError(f"CSV probe '{path}' is not UTF-8 text (byte {exc.start})",
                           "save it as 'CSV UTF-8' (Excel) or re-encode it, e.g. `iconv -f latin1 -t utf-8`") from None
    if "\0" in text:
        raise AdvisorError(f"CSV probe '{path}' contains NUL bytes: it is not a text CSV", "write one 'path,label' row per image as plain text")
    delimiter = _csv_delimiter(text)
    try:
        rows = [[c.strip() for c in row] for row in csv.reader(text.splitlines(), delimiter=delimiter)]
    except csv.Error as exc:
        raise AdvisorError(f"CSV probe '{path}' cannot be parsed: {exc}", "write one 'path,label' row per image") from None
    numbered = [(n, r) for n, r in enumerate(rows, start=1) if r and r[0]]
    if numbered and _is_header(numbered[0][1], path.parent):
        numbered = numbered[1:]
    if not numbered:
        raise AdvisorError(f"CSV probe '{path}' has no rows", "write one 'path,label' row per image")
    paths, raw, seen = [], [], {}
    for line_no, row in numbered:
        p = Path(row[0])
        p = p if p.is_absolute() else path.parent / p
        if p.is_dir():
            raise AdvisorError(f"CSV probe '{path}' names a folder '{row[0]}' (row {line_no})", "list image files, one per row")
        if not p.is_file():
            raise AdvisorError(f"CSV probe '{path}' names a missing file '{row[0]}' (row {line_no})", "fix the path (relative paths are relative to the CSV) or remove the row")
        key = p.resolve()
        if key in seen:  # a repeated image would be its own nearest neighbour, or carry two labels
            first = seen[key]
            clash = (row[1] if len(row) > 1 else "") != raw[first[1]]
            raise AdvisorError(f"CSV probe '{path}' lists '{row[0]}' twice (rows {first[0]} and {line_no})"
                               + (" with different labels" if clash else ""),
                               "keep one row per image" + (" with its one label" if clash else ""))
        seen[key] = (line_no, len(paths))
        paths.append(p)
        raw.append(row[1] if len(row) > 1 else "")
    has = [bool(r) for r in raw]
    if any(has) and not all(has):
        raise AdvisorError(f"CSV probe '{path}' labels some rows but not others", "give every row a label, or none")
    labels, names = _label_codes(raw) if all(has) else (None, None)
    return [str(p) for p in paths], labels, names, None, _file_digest(paths)


HEADER_WORDS = {"path", "paths", "file", "files", "filename", "file_name", "filepath", "file_path", "image", "images",
                "img", "image_path", "image_id", "name", "label", "labels", "class", "target", "y"}


def _csv_delimiter(text: str) -> str:
    """``,`` unless the first line is clearly ``;``- or tab-separated (Excel in many locales writes ``;``)."""
    first = next((line for line in text.splitlines() if line.strip()), "")
    if "," in first:
        return ","
    return next((d for d in (";", "\t") if d in first), ",")


def _is_header(row: list[str], base: Path) -> bool:
    """The first row is a header when its first cell is not an image file that exists, and is either a
    usual column name (path, filename, image, ...) or does not end in an image suffix at all."""
    first = row[0]
    p = Path(first)
    if (p if p.is_absolute() else base / p).is_file():
        return False
    return first.lower() in HEADER_WORDS or p.suffix.lower() not in IMAGE_SUFFIXES


def _npz(path: Path, split: str | None):
    data = _open_npz(path)
    with data:
        keys = set(data.files)
        split_keys = sorted(k for k in keys if k.endswith("_images") and k[: -len("_images")] in SPLIT_NAMES)
        splits = [k[: -len("_images")] for k in split_keys]
        pairs = [(f"{split}_images", f"{split}_labels")] if split else []
        if split in (None, "train"):
            pairs += [("images", "labels"), ("images", "y"), ("x", "y"), ("X", "y"), ("train_images", "train_labels")]
        ik, lk = next(((i, lab) for i, lab in pairs if i in keys), (None, None))
        if ik is None:
            if split and splits:
                raise AdvisorError(f"npz probe '{path}' has no '{split}' split (its splits: {', '.join(splits)})", f"pass --split {splits[0]}")
            if split not in (None, "train") and keys & {"images", "x", "X"}:
                _no_split(f"npz probe '{path}'", split, f"arrays: {', '.join(sorted(keys))}", "drop --split: this file holds one set of images")
            raise AdvisorError(f"npz probe '{path}' has no image array (arrays: {', '.join(sorted(keys)) or 'none'})",
                               f"name the arrays '{split or 'train'}_images'/'{split or 'train'}_labels' or 'images'/'labels'")
        images = _npz_member(data, path, ik)
        raw_labels = _npz_member(data, path, lk) if lk in keys else None
    if images.ndim == 4 and images.shape[1] in (1, 3) and images.shape[-1] not in (1, 3):
        raise AdvisorError(f"npz probe '{path}': '{ik}' has shape {images.shape}, channels first",
                           f"store channels last: np.moveaxis({ik}, 1, -1) gives [N, H, W, {images.shape[1]}]")
    if images.ndim not in (3, 4) or (images.ndim == 4 and images.shape[-1] not in (1, 3)):
        raise AdvisorError(f"npz probe '{path}': '{ik}' has shape {images.shape}", "expected [N, H, W] (grey) or [N, H, W, 3] (RGB)")
    if images.shape[0] == 0:
        raise AdvisorError(f"npz probe '{path}': '{ik}' holds no images (shape {images.shape})", "store at least one image per class")
    if min(images.shape[1:3]) == 0:
        raise AdvisorError(f"npz probe '{path}': '{ik}' has empty images (shape {images.shape})", "store images of at least 1 × 1 pixels")
    labels, names = (None, None) if raw_labels is None else _npz_labels(raw_labels, len(images), path, lk)
    h = hashlib.sha256()
    h.update(str(images.dtype).encode() + str(images.shape).encode())
    h.update(np.ascontiguousarray(images).data)
    pixels = pixels_to_uint8(images, f"npz probe '{path}': '{ik}'")
    return list(range(len(images))), labels, names, pixels, h.digest()


def _open_npz(path: Path):
    """``np.load`` of an .npz without ever unpickling; anything that is not an .npz archive is one line."""
    import zipfile
    import zlib

    try:
        data = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise AdvisorError(f"npz probe '{path}' is not a readable NumPy .npz archive ({type(exc).__name__})",
                           "save it with numpy.savez(path, images=..., labels=...) (or savez_compressed)") from None
    if not hasattr(data, "files"):  # a single .npy array saved under an .npz name
        raise AdvisorError(f"npz probe '{path}' holds a single .npy array (shape {getattr(data, 'shape', '?')}), not named arrays",
                           "save it with numpy.savez(path, images=images, labels=labels)")
    return data


def _npz_member(data, path: Path, key: str) -> np.ndarray:
    import zipfile
    import zlib

    try:
        arr = data[key]
    except ValueError as exc:
        if "bject" in str(exc):
            raise AdvisorError(f"npz probe '{path}': array '{key}' holds Python objects (dtype=object), which advisor never loads",
                               f"re-save '{key}' as a plain array: images as one uint8 array [N, H, W(, 3)], labels as ints or strings "
                               "(np.asarray(labels, dtype=str))") from None
        raise AdvisorError(f"npz probe '{path}': array '{key}' is damaged ({exc})", "re-save the file with numpy.savez") from None
    except (OSError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as exc:
        raise AdvisorError(f"npz probe '{path}': array '{key}' cannot be read ({type(exc).__name__})", "re-save the file with numpy.savez") from None
    if not isinstance(arr, np.ndarray):
        raise AdvisorError(f"npz probe '{path}': member '{key}' is not a NumPy array", "save the arrays with numpy.savez")
    return arr


def _npz_labels(raw: np.ndarray, n: int, path: Path, key: str) -> tuple[np.ndarray, tuple[str, ...]]:
    """Class codes ``0..C-1`` and names from an npz label array: ints, bools or strings (mapped like a
    CSV's labels), shape ``[N]``, ``[N, 1]`` (MedMNIST) or one-hot ``[N, C]``."""
    where = f"npz probe '{path}': labels '{key}'"
    arr = raw
    if arr.ndim == 2 and arr.shape[0] == n and arr.shape[1] > 1:
        onehot = arr.dtype.kind in "biuf" and np.isin(arr, (0, 1)).all() and (arr.sum(axis=1) == 1).all()
        if not onehot:
            raise AdvisorError(f"{where} have shape {arr.shape}: several values per image (multi-label)",
                               "advisor needs one class per image: store labels of shape [N]")
        arr = arr.argmax(axis=1)
    elif arr.ndim != 1:
        if arr.size != n or arr.ndim == 0:
            raise AdvisorError(f"{where} have shape {arr.shape}, but there are {n} images", "store one label per image, shape [N] or [N, 1]")
        arr = arr.reshape(-1)
    if len(arr) != n:
        raise AdvisorError(f"npz probe '{path}': {n} images but {len(arr)} labels", "store one label per image")
    kind = arr.dtype.kind
    if kind in "US":
        text = [(v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)).strip() for v in arr.tolist()]
        if not all(text):
            raise AdvisorError(f"{where}: {text.count('')} empty label(s)", "give every image a label")
        return _label_codes(text)
    if kind == "b":
        uniq = np.unique(arr)
        return np.searchsorted(uniq, arr).astype(np.int64), tuple(str(bool(u)) for u in uniq)
    if kind == "f":
        if not np.isfinite(arr).all():
            raise AdvisorError(f"{where}: {int((~np.isfinite(arr)).sum())} NaN/inf label(s)", "give every image a class id")
        if not (arr == np.round(arr)).all():
            bad = arr[arr != np.round(arr)][0]
            raise AdvisorError(f"{where} are not class ids (e.g. {bad})", "store integer class ids or strings, one per image")
        arr = arr.astype(np.int64)
    elif kind not in "iu":
        raise AdvisorError(f"{where} have dtype {arr.dtype}", "store integer class ids or strings, one per image")
    uniq = np.unique(arr)
    return np.searchsorted(uniq, arr).astype(np.int64), tuple(str(int(u)) for u in uniq)


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
