"""Train / validation / held-out parts of a labelled probe: the one split code of ``advisor validate``
and ``advisor bench``.

- :func:`split_names`: the splits a probe has of its own (``train/``, ``val/``, ``test/`` ... folders
  of an ImageFolder tree, ``<split>_images`` arrays of an ``.npz``).
- :func:`train_val_split` (``advisor validate``): the probe's own ``train`` and held-out split when
  it has both, else a stratified, seeded ``HELD_OUT_FRACTION`` hold-out of the whole probe.
- :func:`target_parts` (``advisor bench``): a test part held out from every choice, and from the
  rest a training part and an lr-selection part.

Every part is a :class:`~advisor.data.probe.Probe` whose ``hash`` names its selection: the cached
validation and bench runs are keyed on these hashes, so the selections here must not change.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from advisor.data.probe import Probe, load_probe, subsample_indices
from advisor.data.readers import npz_split_names, split_folders
from advisor.errors import AdvisorError

HELD_OUT_FRACTION = 0.3
HELD_OUT_SPLITS = ("val", "valid", "validation", "test")  # validate's held-out split: the first the probe has


def split_names(spec: str) -> frozenset[str]:
    """The splits ``spec`` has of its own: the (non-hidden) sub-folders of a folder named like a
    split, or the ``<split>_images`` arrays of an ``.npz``; empty for anything else."""
    if spec.startswith("builtin:"):
        return frozenset()
    path = Path(spec).expanduser()
    if path.is_dir():
        return frozenset(p.name for p in split_folders(path))
    if path.suffix.lower() == ".npz" and path.is_file():
        with np.load(path, allow_pickle=False) as data:
            return frozenset(npz_split_names(data.files))
    return frozenset()


def held_out_split_name(spec: str) -> str | None:
    """The probe's own held-out split (the first of :data:`HELD_OUT_SPLITS` it has) when it also has
    ``train``; else None."""
    names = split_names(spec)
    return next((s for s in HELD_OUT_SPLITS if s in names), None) if "train" in names else None


def stratified_take(labels: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Sorted indices of a seeded, stratified sample of ``n`` of ``labels`` (every class kept).

    scikit-learn's stratified split where it can make one (what every cached validation and bench
    run was keyed on); when what is left over would hold fewer images than there are classes, which
    it refuses, the probe loader's quota rule (each class its share, at least one)."""
    from sklearn.model_selection import train_test_split

    n_classes = len(np.unique(labels))
    if n < n_classes:
        raise AdvisorError(f"a cap of {n} training images is fewer than the {n_classes} classes",
                           f"raise --max-images / --max-train to at least {n_classes}")
    if len(labels) - n < n_classes:
        return subsample_indices(labels, len(labels), n, seed)
    idx = np.arange(len(labels))
    keep, _ = train_test_split(idx, train_size=n, stratify=labels, random_state=seed)
    return np.sort(keep)


def subset(p: Probe, idx: np.ndarray, part: str) -> Probe:
    """The images ``idx`` of ``p`` as a probe of their own, hashed by ``p``'s hash, ``part`` and ``idx``."""
    h = hashlib.sha256(f"{p.hash}|{part}|".encode() + idx.astype(np.int64).tobytes()).hexdigest()[:20]
    return replace(p, items=tuple(p.items[i] for i in idx), labels=p.labels[idx], hash=h)


def _stratified_halves(labels: np.ndarray, n_second: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A seeded stratified split of ``labels`` into (first, second) index arrays, ``n_second`` in the second."""
    from sklearn.model_selection import StratifiedShuffleSplit

    return next(StratifiedShuffleSplit(n_splits=1, test_size=n_second, random_state=seed).split(np.zeros(len(labels)), labels))


def train_val_split(spec: str, *, max_images: int | None = None, seed: int = 0) -> tuple[Probe, Probe, str]:
    """The probe's own train and held-out splits when it has them (ImageFolder ``train/`` +
    ``val|test/``, or ``.npz`` ``train_*`` + ``test_*`` arrays); otherwise a stratified, seeded
    ``HELD_OUT_FRACTION`` hold-out of the whole probe. ``max_images`` caps the training part."""
    held = held_out_split_name(spec)
    if held:
        train = load_probe(spec, split="train", max_images=max_images, seed=seed)
        val = load_probe(spec, split=held, seed=seed)
        if train.class_names != val.class_names:
            raise AdvisorError(f"probe '{spec}': the train and {held} splits have different classes",
                               "give both splits the same class folders")
        return train, val, f"the probe's own splits: train ({len(train)}) / {held} ({len(val)})"
    full = load_probe(spec, split=None, seed=seed)
    if full.labels is None:
        raise AdvisorError(f"probe '{spec}' has no labels", "validation trains a classifier: use one sub-folder per class")
    counts = np.bincount(full.labels)
    if counts.min() < 2:
        raise AdvisorError(f"probe '{spec}' has a class with {counts.min()} image(s)", "validation needs at least 2 images per class (one to train, one to test)")
    n_val = max(len(counts), int(round(HELD_OUT_FRACTION * len(full))))
    tr, va = _stratified_halves(full.labels, n_val, seed)
    if max_images is not None and len(tr) > max_images:
        tr = tr[stratified_take(full.labels[tr], max_images, seed)]
    train, val = subset(full, np.sort(tr), "train"), subset(full, np.sort(va), "held-out")
    return train, val, f"stratified seeded hold-out (seed {seed}): train {len(train)} / held-out {len(val)}"


@dataclass
class TargetParts:
    """``train``/``val``: the fine-tunes' training part and the lr-selection part (disjoint, both from
    the training pool); ``test``: held out from every choice; ``score``: what the estimators see
    (the training pool capped at ``max_train``, the same probe ``advisor validate`` trains on)."""

    spec: str
    train: Probe
    val: Probe
    test: Probe
    score: Probe
    note: str


def target_parts(spec: str, *, seed: int, max_train: int | None, val_fraction: float) -> TargetParts:
    """Pool/test from the target's own ``train``/``test`` splits when it has both (an npz's ``val``
    split is not used as the test set), otherwise :func:`train_val_split`'s stratified hold-out; then
    a stratified ``val_fraction`` of the pool for lr selection. With ``max_train`` the pool is first
    capped at ``max_train / (1 − val_fraction)`` so the training part is about ``max_train``."""
    if {"train", "test"} <= split_names(spec):
        pool = load_probe(spec, split="train", seed=seed)
        test = load_probe(spec, split="test", seed=seed)
        if pool.class_names != test.class_names:
            raise AdvisorError(f"target '{spec}': the train and test splits have different classes", "give both splits the same classes")
        note = f"own splits: train pool {len(pool)} / test {len(test)}"
    else:
        pool, test, note = train_val_split(spec, seed=seed)
    cap = None if max_train is None else math.ceil(max_train / (1 - val_fraction))
    if cap is not None and len(pool) > cap:
        pool = subset(pool, stratified_take(pool.labels, cap, seed), "bench-pool")
    counts = np.bincount(pool.labels, minlength=pool.num_classes)
    if counts.min() < 2:
        raise AdvisorError(f"target '{spec}' has a class with {counts.min()} training image(s)",
                           "the lr-selection split needs at least 2 training images per class")
    n_val = max(pool.num_classes, round(val_fraction * len(pool)))
    if n_val >= len(pool):
        raise AdvisorError(f"target '{spec}' is too small to carve a validation part ({len(pool)} training images)",
                           "use a larger target or a smaller val_fraction")
    tr, va = _stratified_halves(pool.labels, n_val, seed)
    train, val = subset(pool, np.sort(tr), "bench-train"), subset(pool, np.sort(va), "bench-val")
    score, _, _ = train_val_split(spec, max_images=max_train, seed=seed)
    return TargetParts(spec, train, val, test, score, f"{note}; fine-tune train {len(train)} / lr-selection val {len(val)} / test {len(test)}")
