"""The probe as the ranking reads it: loaded, its unreadable images skipped (and remembered in the
cache), decoded at most once per run and checked for the minimum the estimators need."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from advisor.data.probe import DECODE_SIDE, Probe, decode_all, load_probe
from advisor.errors import AdvisorError
from advisor.store import artifacts, db

if TYPE_CHECKING:
    from advisor.ranking.progress import Progress

KEEP_DECODED_BYTES = 1 << 30  # decoded images kept for the run: at most 1 GiB (the rest are decoded per model)


def prepare_probe(probe: Probe | str, *, split: str | None = "train", max_images: int | None = None, seed: int = 0) -> Probe:
    """Load the probe and drop the images known (from the cache) to be unreadable."""
    if isinstance(probe, str):
        probe = load_probe(probe, split=split, max_images=max_images, seed=seed)
    if db.cache_path().exists():
        with db.connect(read_only=True) as con:
            skipped = artifacts.skipped_images(con, probe.hash)  # item name -> why it could not be read
        if skipped is not None:
            bad = {i: skipped[probe.item_name(i)] for i in range(len(probe)) if probe.item_name(i) in skipped}
            probe = Validated.mark(probe.without(bad))
    return probe


def unreadable_example(skipped: list[tuple[str, str]] | tuple[tuple[str, str], ...]) -> str:
    """Up to three unreadable images as ``name (why); ...``, for the warnings and errors that name them."""
    return "; ".join(f"{name} ({why})" for name, why in skipped[:3]) + (" ..." if len(skipped) > 3 else "")


class Validated:
    """Remembers which probes were already checked for unreadable images in this process."""

    hashes: set[str] = set()

    @classmethod
    def mark(cls, probe: Probe) -> Probe:
        cls.hashes.add(probe.hash + str(len(probe)))
        return probe

    @classmethod
    def done(cls, probe: Probe) -> bool:
        return probe.hash + str(len(probe)) in cls.hashes


MIN_IMAGES = 4  # estimators need at least this many readable images


def needed_side(data_config: dict) -> int:
    """The shorter image side a model's eval transform resizes to (timm: ``input_size / crop_pct``)."""
    _, h, w = data_config["input_size"]
    return int(math.ceil(max(h, w) / float(data_config.get("crop_pct") or 1.0)))


class Decoded:
    """Decodes the probe at most once per run, validating it the first time: unreadable images are
    skipped (with a warning) and only then is the minimum number of images checked. Decoded images
    are kept for the rest of the run up to ``KEEP_DECODED_BYTES`` (the rest are decoded again per
    model), each reduced while decoding to ``side`` (:data:`advisor.data.probe.DECODE_SIDE`, or 2 ×
    ``--img-size`` when larger), so memory is bounded whatever the probe's size and its camera."""

    def __init__(self, progress: Progress, img_size: int | None = None):
        self.progress = progress
        self.images: dict | None = None
        self.side = max(DECODE_SIDE, 2 * img_size) if img_size else DECODE_SIDE

    def get(self, probe: Probe) -> tuple[Probe, dict]:
        probe = replace(probe, decode_side=self.side)
        if self.images is not None:
            return probe, self.images
        n_files = len(probe)
        images, bad = decode_all(probe, keep_bytes=KEEP_DECODED_BYTES)
        example = unreadable_example([(probe.item_name(i), r) for i, r in bad.items()])
        if bad:
            kept = [i for i in range(len(probe)) if i not in bad]
            probe = probe.without(bad)
            images = {new: images[old] for new, old in enumerate(kept) if old in images}
        # checked on what could be read, before anything is written; one line that names the unreadable files
        if len(probe) == 0:
            raise AdvisorError(f"none of the images in probe '{probe.spec}' could be read, e.g. {example}",
                               "check that the files are valid images")
        if len(probe) < MIN_IMAGES:
            unread = f" once {len(bad)} unreadable of {n_files} are skipped ({example})" if bad else ""
            raise AdvisorError(f"probe '{probe.spec}' has {len(probe)} images{unread}",
                               f"estimators need at least {MIN_IMAGES} images: add images" + (" or fix the unreadable ones" if bad else ""))
        if probe.labels is not None and len(np.unique(probe.labels)) < 2:
            raise AdvisorError(f"probe '{probe.spec}' has a single readable class" + (f" once {len(bad)} unreadable are skipped ({example})" if bad else ""),
                               "add readable images of at least 2 classes")
        if bad:
            self.progress.warn(f"skipped {len(bad)} unreadable image(s) of {n_files}: {example}")
        with db.transaction() as con:
            artifacts.store_probe(con, probe.hash, probe.spec, len(probe), probe.num_classes, list(probe.class_names or []), probe.skipped)
        self.images = images
        Validated.mark(probe)
        return probe, images

    def for_model(self, probe: Probe, images: dict, data_config: dict) -> tuple[Probe, dict]:
        """The probe and kept images for one model: when its preprocessing resizes to a larger side
        than was decoded (``input_size / crop_pct``, e.g. 600 / 0.949 for EfficientNet-B7), its
        images are decoded again at that side, so no model sees upsampled pixels."""
        need = needed_side(data_config)
        if need <= self.side:
            return probe, images
        return replace(probe, decode_side=need), {}
