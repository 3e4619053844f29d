import numpy as np
import pytest
from conftest import write_images

from advisor import AdvisorError, load_probe


def test_image_folder_labels_from_subfolders(image_folder):
    p = load_probe(str(image_folder))
    assert len(p) == 24 and p.class_names == ("cat", "dog", "eel")
    assert np.bincount(p.labels).tolist() == [8, 8, 8]
    assert p.load_image(0).mode == "RGB"


def test_split_folders_are_recognised(tmp_path):
    write_images(tmp_path / "d" / "train", {"a": 4, "b": 4})
    write_images(tmp_path / "d" / "test", {"a": 2, "b": 2})
    assert len(load_probe(str(tmp_path / "d"))) == 8
    assert len(load_probe(str(tmp_path / "d"), split="test")) == 4
    with pytest.raises(AdvisorError, match="no 'val'"):
        load_probe(str(tmp_path / "d"), split="val")


def test_flat_folder_is_unlabelled(tmp_path):
    write_images(tmp_path / "x", {"only": 5})
    p = load_probe(str(tmp_path / "x" / "only"))
    assert len(p) == 5 and p.labels is None


def test_csv_probe(tmp_path, image_folder):
    rows = ["path,label"] + [f"{f.relative_to(tmp_path)},{f.parent.name}" for f in sorted(image_folder.rglob("*.png"))]
    (tmp_path / "p.csv").write_text("\n".join(rows))
    p = load_probe(str(tmp_path / "p.csv"))
    assert len(p) == 24 and p.num_classes == 3


def test_csv_missing_file_is_an_error(tmp_path):
    (tmp_path / "p.csv").write_text("path,label\nnope.jpg,a\n")
    with pytest.raises(AdvisorError, match="missing file 'nope.jpg'"):
        load_probe(str(tmp_path / "p.csv"))


@pytest.mark.parametrize("shape", [(20, 28, 28), (20, 16, 16, 3)])
def test_npz_grey_and_rgb(tmp_path, shape):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", train_images=rng.integers(0, 255, shape, dtype=np.uint8), train_labels=np.arange(20) % 2)
    p = load_probe(str(tmp_path / "d.npz"))
    assert len(p) == 20 and p.num_classes == 2
    assert p.load_image(3).mode == "RGB" and p.load_image(3).size == (shape[2], shape[1])


def test_builtin_digits():
    p = load_probe("builtin:digits")
    assert len(p) == 1797 and p.num_classes == 10


def test_stratified_seeded_subsample():
    a = load_probe("builtin:digits", max_images=100, seed=1)
    b = load_probe("builtin:digits", max_images=100, seed=1)
    c = load_probe("builtin:digits", max_images=100, seed=2)
    assert len(a) == 100 and a.items == b.items and a.hash == b.hash
    assert a.items != c.items and a.hash != c.hash
    assert np.bincount(a.labels).min() >= 9  # every class keeps its share


def test_hash_covers_bytes_and_labels(tmp_path):
    root = write_images(tmp_path / "p", {"a": 3, "b": 3})
    h1 = load_probe(str(root)).hash
    first = sorted(root.rglob("*.png"))[0]
    first.write_bytes(first.read_bytes() + b"\0")
    h2 = load_probe(str(root)).hash
    (root / "a").rename(root / "c")  # same bytes, other label names
    h3 = load_probe(str(root)).hash
    assert len({h1, h2, h3}) == 3


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: p, "does not exist"),
        (lambda p: p.mkdir() or p, "contains nothing"),
        (lambda p: (p.mkdir(), (p / "notes.txt").write_text("hi"), p)[-1], "contains no image files"),
        (lambda p: write_images(p, {"one": 4}), "single class"),
    ],
    ids=["missing-path", "empty-folder", "non-images", "single-class"],
)
def test_bad_probes(tmp_path, make, message):
    path = make(tmp_path / "probe")
    with pytest.raises(AdvisorError, match=message) as info:
        load_probe(str(path))
    assert info.value.hint  # every error says what to do


def test_max_images_must_be_positive():
    with pytest.raises(AdvisorError, match="at least 1"):
        load_probe("builtin:digits", max_images=0)
