"""The probe formats, each read into ``(items, labels, class_names, arrays, digest)``.
Size: ~300 lines; four formats and the one split rule they share.

- :func:`read_builtin` — ``builtin:digits``, scikit-learn's bundled 8×8 digits (1,797 images, 10 classes), offline;
- :func:`read_npz` — a ``.npz`` with an image array (``[N, H, W]`` grey or ``[N, H, W, 3]`` RGB) and a label array
  (ints, bools or strings; ``[N]``, ``[N, 1]`` or one-hot ``[N, C]``); keys
  ``<split>_images``/``<split>_labels`` (MedMNIST style) or ``images``/``x`` and ``labels``/``y``;
- :func:`read_csv` — a ``.csv`` with ``path,label`` rows (paths relative to the CSV; ``label`` may be empty; a
  header row and an Excel byte-order mark are recognised);
- :func:`read_folder` — an ImageFolder tree ``root/<class>/<image>``, or ``root/<split>/<class>/<image>``
  (``--split``); a flat folder of images: unlabelled.

``items`` are file paths (str) or int indices into ``arrays`` (uint8, see
:func:`advisor.data.images.pixels_to_uint8`); ``labels`` int64 codes ``0..C-1`` of the sorted
``class_names`` or None; ``digest`` covers the image bytes.
"""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import numpy as np

from advisor.data.images import pixels_to_uint8
from advisor.errors import AdvisorError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
SPLIT_NAMES = ("train", "val", "valid", "validation", "test")


def _file_digest(paths) -> bytes:
    h = hashlib.sha256()
    for p in paths:
        h.update(str(p).encode())
        h.update(hashlib.sha256(Path(p).read_bytes()).digest())
    return h.digest()


def label_codes(raw: list[str]) -> tuple[np.ndarray, tuple[str, ...]]:
    """Class codes ``0..C-1`` of ``raw`` label strings, and the class names in natural order (``2`` before ``10``)."""
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


def split_folders(root: Path) -> list[Path]:
    """A probe folder's split sub-folders (non-hidden, named like a split in any case): the one rule."""
    return [p for p in sorted(root.iterdir()) if p.is_dir() and not p.name.startswith(".") and p.name.lower() in SPLIT_NAMES]


def npz_split_names(keys) -> list[str]:
    """The splits an ``.npz`` holds (``<split>_images`` arrays named like a split): the one rule."""
    return [k[: -len("_images")] for k in sorted(keys) if k.endswith("_images") and k[: -len("_images")] in SPLIT_NAMES]


def read_folder(root: Path, split: str | None):
    subdirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    splits = split_folders(root)
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
        labels, names = label_codes(raw)
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


def read_csv(path: Path, split: str | None = None):
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
    labels, names = label_codes(raw) if all(has) else (None, None)
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


def read_npz(path: Path, split: str | None):
    data = _open_npz(path)
    with data:
        keys = set(data.files)
        splits = npz_split_names(keys)
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
        return label_codes(text)
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


def read_builtin(spec: str):
    name = spec.split(":", 1)[1]
    if name != "digits":
        raise AdvisorError(f"unknown builtin probe '{spec}'", "the built-in probe is builtin:digits")
    from sklearn.datasets import load_digits

    d = load_digits()
    images = (d.images / 16.0 * 255.0).round().astype(np.uint8)  # 0..16 grey levels → 8-bit
    names = tuple(str(c) for c in d.target_names)
    digest = hashlib.sha256(images.tobytes()).digest()
    return list(range(len(images))), d.target.astype(np.int64), names, images, digest
