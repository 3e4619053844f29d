"""Hostile probes (issue 13, kinds 1, 3, 7 and 8): every input is a right value or a one-line error
(exit 2, one stderr line, no traceback, nothing written to the cache), never silently mangled pixels."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
from conftest import assert_one_line_error, write_images
from PIL import Image

from advisor import AdvisorError, load_probe
from advisor.data.images import DECODE_SIDE, open_image, pixels_to_uint8


@pytest.fixture
def weights_stub(tmp_path):
    """A model id that resolves without torch (a file: id); nothing in these tests gets to load it."""
    w = tmp_path / "w.safetensors"
    w.write_bytes(b"not reached")
    return f"file:{w}?arch=resnet18"


def _npz(tmp_path, name="d.npz", **arrays):
    path = tmp_path / name
    np.savez(path, **arrays)
    return path


def _labels(n=8, c=2):
    return np.arange(n) % c


# ---------------------------------------------------------------- kind 3: pixels, files


def _pixel(path, xy=(0, 0)):
    return open_image(path).getpixel(xy)


def test_16bit_png_is_scaled_by_its_bit_depth_not_white(tmp_path):
    grad = np.linspace(0, 65535, 32 * 32).reshape(32, 32).astype(np.uint16)
    Image.fromarray(grad).save(tmp_path / "g.png")
    assert Image.open(tmp_path / "g.png").mode == "I;16"
    got = np.asarray(open_image(tmp_path / "g.png"))
    want = np.round(grad / 257.0)
    assert got.shape == (32, 32, 3) and np.abs(got[..., 0] - want).max() <= 1
    assert got.mean() == pytest.approx(127.5, abs=1)  # was ~255 (clipped white)


@pytest.mark.parametrize("fmt", ["tif", "pgm"])
def test_16bit_tiff_and_pnm_are_scaled(tmp_path, fmt):
    Image.fromarray(np.full((8, 8), 32896, np.uint16)).save(tmp_path / f"g.{fmt}")
    assert _pixel(tmp_path / f"g.{fmt}") == (128, 128, 128)


def test_16bit_rgb_png_is_scaled(tmp_path):
    import struct
    import zlib

    arr = np.zeros((4, 4, 3), np.uint16)
    arr[..., 0], arr[..., 1], arr[..., 2] = 65535, 32896, 257
    raw = b"".join(b"\x00" + row.astype(">u2").tobytes() for row in arr)

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    (tmp_path / "c.png").write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 4, 4, 16, 2, 0, 0, 0))
                                     + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
    assert _pixel(tmp_path / "c.png") == (255, 128, 1)


def test_12bit_pgm_maxval_is_scaled(tmp_path):
    (tmp_path / "m.pgm").write_text("P2\n2 1\n4095\n0 4095\n")
    assert np.asarray(open_image(tmp_path / "m.pgm"))[0, :, 0].tolist() == [0, 255]


def test_exif_orientation_is_applied_as_viewers_show_it(tmp_path):
    arr = np.zeros((10, 20, 3), np.uint8)
    arr[:5, :5] = (255, 0, 0)  # red block top-left of the stored (landscape) pixels
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    Image.fromarray(arr).save(tmp_path / "r.jpg", exif=exif, quality=100)
    im = open_image(tmp_path / "r.jpg")
    assert im.size == (10, 20)  # portrait, as shown
    r, g, b = im.getpixel((8, 1))  # the block is now top-right
    assert r > 200 and g < 60 and b < 60


@pytest.mark.parametrize(
    "mode, make, expected",
    [
        ("1", lambda: Image.new("1", (4, 4), 1), (255, 255, 255)),
        ("L", lambda: Image.new("L", (4, 4), 77), (77, 77, 77)),
        ("P", lambda: Image.new("RGB", (4, 4), (10, 200, 30)).convert("P", palette=Image.Palette.ADAPTIVE), (10, 200, 30)),
        ("RGBA transparent", lambda: Image.new("RGBA", (4, 4), (0, 0, 0, 0)), (255, 255, 255)),
        ("RGBA half", lambda: Image.new("RGBA", (4, 4), (255, 0, 0, 128)), (255, 127, 127)),
        ("LA transparent", lambda: Image.new("LA", (4, 4), (0, 0)), (255, 255, 255)),
        ("LA opaque", lambda: Image.new("LA", (4, 4), (40, 255)), (40, 40, 40)),
        ("I;16", lambda: Image.fromarray(np.full((4, 4), 65535, np.uint16)), (255, 255, 255)),
        ("I;16 dark", lambda: Image.fromarray(np.full((4, 4), 257, np.uint16)), (1, 1, 1)),
    ],
)
def test_every_png_mode_becomes_the_rgb_a_viewer_shows(tmp_path, mode, make, expected):
    make().save(tmp_path / "x.png")
    got = _pixel(tmp_path / "x.png")
    assert all(abs(a - b) <= 1 for a, b in zip(got, expected)), (mode, got)


def test_palette_with_transparent_index_is_composited_on_white(tmp_path):
    im = Image.new("P", (4, 4), 0)
    im.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    im.putpixel((1, 1), 1)
    im.info["transparency"] = 0
    im.save(tmp_path / "p.png")
    im.save(tmp_path / "p.gif", transparency=0)
    for f in ("p.png", "p.gif"):
        assert _pixel(tmp_path / f) == (255, 255, 255) and _pixel(tmp_path / f, (1, 1)) == (255, 0, 0)


def test_cmyk_jpeg_and_other_modes(tmp_path):
    Image.new("RGB", (8, 8), (0, 0, 255)).convert("CMYK").save(tmp_path / "c.jpg", quality=100)
    r, g, b = _pixel(tmp_path / "c.jpg", (4, 4))
    assert r < 30 and g < 30 and b > 220
    Image.new("RGBA", (4, 4), (0, 0, 0, 0)).save(tmp_path / "t.webp", lossless=True)
    assert _pixel(tmp_path / "t.webp") == (255, 255, 255)


def test_float_tiff_in_unit_range_is_scaled(tmp_path):
    Image.fromarray(np.full((4, 4), 0.5, np.float32)).save(tmp_path / "f.tif")
    assert _pixel(tmp_path / "f.tif") == (128, 128, 128)


@pytest.mark.parametrize(
    "name, arr, message",
    [
        ("f255.tif", np.full((4, 4), 200.0, np.float32), "not [0, 1]"),
        ("fnan.tif", np.full((4, 4), np.nan, np.float32), "NaN"),
        ("i32.tif", np.full((4, 4), 70000, np.int32), "ambiguous"),
    ],
)
def test_ambiguous_file_pixels_are_skipped_with_the_reason(tmp_path, name, arr, message):
    """An image whose pixels have no unambiguous meaning is treated like a corrupt file: skipped,
    counted, and the reason shown — never scored as clipped pixels."""
    from advisor.data.images import decode_all

    root = write_images(tmp_path / "p", {"a": 2, "b": 2})
    Image.fromarray(arr).save(root / "a" / name)
    probe = load_probe(str(root))
    images, bad = decode_all(probe)
    assert len(images) == 4 and len(bad) == 1
    assert name in probe.item_name(next(iter(bad))) and message in next(iter(bad.values()))


# ---------------------------------------------------------------- kind 3: pixels, npz


@pytest.mark.parametrize(
    "arr, expected",
    [
        (np.array([[0.0, 0.5, 1.0]]), [0, 128, 255]),
        (np.array([[0, 257, 65535]], np.uint16), [0, 1, 255]),
        (np.array([[0, 32896, 65535]], np.uint16), [0, 128, 255]),
        (np.array([[0, 7, 255]], np.int64), [0, 7, 255]),
        (np.array([[False, True, True]]), [0, 255, 255]),
        (np.array([[0, 128, 255]], np.uint8), [0, 128, 255]),
    ],
    ids=["float01", "uint16", "uint16-mid", "int64-levels", "bool", "uint8"],
)
def test_npz_pixels_are_converted_where_unambiguous(arr, expected):
    assert pixels_to_uint8(arr[None], "x")[0, 0].tolist() == expected


@pytest.mark.parametrize(
    "arr, needles",
    [
        (np.full((2, 4, 4), 200.0), ["[200, 200]", "divide by 255"]),
        (np.linspace(0, 255, 32).reshape(2, 4, 4), ["[0, 255]", "divide by 255"]),
        (np.linspace(-1, 1, 32).reshape(2, 4, 4), ["[-1, 1]", "(x + 1) / 2"]),
        (np.linspace(-5, 900, 32).reshape(2, 4, 4), ["[-5, 900]", "rescale to [0, 1]"]),
        (np.where(np.arange(32).reshape(2, 4, 4) == 20, np.nan, 0.5), ["1 NaN/inf", "image 1"]),
        (np.full((2, 4, 4), np.inf, np.float32), ["32 NaN/inf"]),
        (np.full((2, 4, 4), 200, np.uint16), ["every value is at most 200", "uint8"]),
        (np.full((2, 4, 4), -3, np.int16), ["[-3, -3]"]),
        (np.full((2, 4, 4), 1 + 1j), ["complex"]),
    ],
    ids=["float-255", "float-0-255", "float-pm1", "float-wild", "nan", "inf", "uint16-8bit", "negative-int", "complex"],
)
def test_npz_ambiguous_pixels_are_refused_with_range_and_fix(arr, needles):
    with pytest.raises(AdvisorError) as info:
        pixels_to_uint8(arr, "npz probe 'd.npz': 'images'")
    text = str(info.value)
    assert "\n" not in text and info.value.hint
    for n in needles:
        assert n in text, text


def test_npz_float_0_255_is_one_line_on_the_cli_and_writes_nothing(tmp_path, run_cli, weights_stub, advisor_home):
    path = _npz(tmp_path, images=np.random.default_rng(0).uniform(0, 255, (8, 6, 6, 3)), labels=_labels())
    assert_one_line_error(run_cli("rank", str(path), "--models", weights_stub), "floats in [", "divide by 255", home=advisor_home)
    path = _npz(tmp_path, "n.npz", images=np.full((8, 6, 6), np.nan), labels=_labels())
    assert_one_line_error(run_cli("rank", str(path), "--models", weights_stub), "NaN", home=advisor_home)
    assert_one_line_error(run_cli("domain", str(path)), "NaN")


def test_npz_uint16_probe_loads_scaled(tmp_path):
    imgs = np.full((8, 4, 4), 65535, np.uint16)
    imgs[:4] = 0
    p = load_probe(str(_npz(tmp_path, images=imgs, labels=_labels())))
    assert p.load_image(0).getpixel((0, 0)) == (0, 0, 0) and p.load_image(7).getpixel((0, 0)) == (255, 255, 255)


# ---------------------------------------------------------------- kind 1: npz inputs


def test_npz_string_labels_map_like_a_csv(tmp_path):
    from advisor.data.readers import label_codes

    names = np.array(["dog", "cat", "eel10", "eel2"] * 2)
    imgs = np.zeros((8, 4, 4), np.uint8)
    p = load_probe(str(_npz(tmp_path, images=imgs, labels=names)))
    codes, classes = label_codes(names.tolist())
    assert p.class_names == classes == ("cat", "dog", "eel2", "eel10") and p.labels.tolist() == codes.tolist()
    b = load_probe(str(_npz(tmp_path, "b.npz", images=imgs, labels=names.astype("S"))))
    assert b.class_names == p.class_names and b.labels.tolist() == p.labels.tolist()


@pytest.mark.parametrize(
    "labels, classes, codes",
    [
        (np.array([True, False] * 4), ("False", "True"), [1, 0]),
        (np.array([3, 7] * 4), ("3", "7"), [0, 1]),
        ((np.arange(8) % 2)[:, None], ("0", "1"), [0, 1]),  # MedMNIST [N, 1]
        (np.eye(2)[np.arange(8) % 2], ("0", "1"), [0, 1]),  # one-hot
        (np.array([1.0, 2.0] * 4), ("1", "2"), [0, 1]),
    ],
    ids=["bool", "int", "N-by-1", "one-hot", "integral-float"],
)
def test_npz_label_kinds(tmp_path, labels, classes, codes):
    p = load_probe(str(_npz(tmp_path, images=np.zeros((8, 4, 4), np.uint8), labels=labels)))
    assert p.class_names == classes and p.labels[:2].tolist() == codes


def _garbage(tmp_path):
    import os

    (tmp_path / "r.npz").write_bytes(os.urandom(2048))
    return tmp_path / "r.npz"


def _zip_of_png(tmp_path):
    with zipfile.ZipFile(tmp_path / "z.npz", "w") as z:
        z.writestr("images", b"\x89PNG not an array")
    return tmp_path / "z.npz"


def _truncated(tmp_path):
    full = _npz(tmp_path, "full.npz", images=np.zeros((8, 16, 16), np.uint8), labels=_labels())
    (tmp_path / "t.npz").write_bytes(full.read_bytes()[:300])
    return tmp_path / "t.npz"


def _npy(tmp_path):
    np.save(tmp_path / "a.npy", np.zeros((8, 4, 4), np.uint8))
    (tmp_path / "a.npy").rename(tmp_path / "a.npz")
    return tmp_path / "a.npz"


@pytest.mark.parametrize(
    "make, needles",
    [
        (lambda t: _npz(t, images=np.array([np.zeros((2, 2)), np.zeros((3, 3))] * 4, dtype=object), labels=_labels()),
         ["dtype=object", "never loads"]),
        (lambda t: _npz(t, images=np.zeros((8, 4, 4), np.uint8), labels=np.array([{"a": 1}] * 8, dtype=object)),
         ["'labels' holds Python objects"]),
        (_garbage, ["not a readable NumPy .npz"]),
        (lambda t: (t / "e.npz").write_bytes(b"") or t / "e.npz", ["not a readable NumPy .npz"]),
        (_truncated, ["npz"]),
        (_npy, ["single .npy array"]),
        (_zip_of_png, ["not a NumPy array"]),
        (lambda t: _npz(t, images=np.zeros((8, 4, 4), np.uint8), labels=np.arange(7) % 2), ["8 images but 7 labels"]),
        (lambda t: _npz(t, images=np.zeros((8, 16), np.uint8), labels=_labels()), ["shape (8, 16)", "[N, H, W]"]),
        (lambda t: _npz(t, images=np.zeros((8, 4, 4, 4), np.uint8), labels=_labels()), ["shape (8, 4, 4, 4)"]),
        (lambda t: _npz(t, images=np.zeros((8, 3, 16, 16), np.uint8), labels=_labels()), ["channels first", "np.moveaxis"]),
        (lambda t: _npz(t, images=np.zeros((0, 4, 4), np.uint8), labels=np.zeros(0, int)), ["holds no images"]),
        (lambda t: _npz(t, images=np.zeros((8, 0, 4), np.uint8), labels=_labels()), ["empty images"]),
        (lambda t: _npz(t, images=np.zeros((8, 4, 4), np.uint8), labels=np.ones((8, 3), int)), ["multi-label"]),
        (lambda t: _npz(t, images=np.zeros((8, 4, 4), np.uint8), labels=np.linspace(0, 1, 8)), ["not class ids"]),
        (lambda t: _npz(t, images=np.zeros((8, 4, 4), np.uint8), labels=np.array([np.nan] * 8)), ["NaN/inf label"]),
        (lambda t: _npz(t, images=np.zeros((8, 4, 4), np.uint8), labels=np.array(["a", ""] * 4)), ["empty label"]),
        (lambda t: _npz(t, pixels=np.zeros((8, 4, 4), np.uint8)), ["no image array", "pixels"]),
        (lambda t: _npz(t, images=np.zeros((8, 4, 4), np.uint8), labels=np.zeros(8, int)), ["single class"]),
    ],
    ids=["object-images", "object-labels", "random-bytes", "empty-file", "truncated", "npy-renamed", "zip-not-npz",
         "count-mismatch", "ndim-2", "4-channels", "channels-first", "empty-array", "zero-size-images", "multi-label",
         "fractional-labels", "nan-labels", "empty-string-label", "no-image-key", "one-class"],
)
def test_bad_npz_is_a_one_line_error_never_suggesting_pickle(tmp_path, run_cli, weights_stub, advisor_home, make, needles):
    path = make(tmp_path)
    with pytest.raises(AdvisorError) as info:
        load_probe(str(path))
    assert info.value.hint and "pickle" not in str(info.value).lower()
    line = assert_one_line_error(run_cli("rank", str(path), "--models", weights_stub), *needles, home=advisor_home)
    assert "allow_pickle" not in line and "pickle.load" not in line


# ---------------------------------------------------------------- kind 7: checked too early or not at all


def test_minimum_images_is_checked_after_skipping_unreadable(tmp_path, run_cli, weights_stub, advisor_home):
    root = write_images(tmp_path / "p", {"a": 3, "b": 2})
    for f in (root / "a" / "a_000.png", root / "b" / "b_000.png"):
        f.write_bytes(b"corrupt")
    assert_one_line_error(run_cli("rank", str(root), "--models", weights_stub),
              "has 3 images once 2 unreadable of 5 are skipped", "a_000.png", "at least 4", home=advisor_home)


def test_skipped_images_reach_the_minimum_or_warn(tmp_path):
    from advisor.ranking.decoding import MIN_IMAGES, Decoded
    from advisor.ranking.progress import Progress

    root = write_images(tmp_path / "p", {"a": 3, "b": 3})
    (root / "a" / "a_000.png").write_bytes(b"corrupt")
    (root / "b" / "b_002.png").write_bytes(b"")
    warnings = []
    probe, images = Decoded(Progress(warn=warnings.append)).get(load_probe(str(root)))
    assert len(probe) == MIN_IMAGES == 4 and len(images) == 4 and len(probe.skipped) == 2
    assert len(warnings) == 1 and "skipped 2 unreadable image(s) of 6" in warnings[0]
    (root / "a" / "a_001.png").write_bytes(b"corrupt")
    with pytest.raises(AdvisorError, match="has 3 images once 3 unreadable of 6"):
        Decoded(Progress()).get(load_probe(str(root)))


def test_split_on_data_without_splits_is_an_error_naming_what_is_there(tmp_path, run_cli, image_folder, weights_stub, advisor_home):
    with pytest.raises(AdvisorError, match=r"--split test: probe folder .* holds cat/, dog/, eel/"):
        load_probe(str(image_folder), split="test")
    assert len(load_probe(str(image_folder), split="train")) == 24  # the default still means "all of it"
    assert_one_line_error(run_cli("rank", str(image_folder), "--split", "test", "--models", weights_stub), "cat/, dog/, eel/", home=advisor_home)
    assert_one_line_error(run_cli("domain", str(image_folder), "--split", "val"), "--split val")
    flat = write_images(tmp_path / "flat", {"x": 5}) / "x"
    with pytest.raises(AdvisorError, match="holds no sub-folders"):
        load_probe(str(flat), split="val")


def test_split_on_npz_and_csv(tmp_path, image_folder):
    imgs, y = np.zeros((8, 4, 4), np.uint8), _labels()
    plain = _npz(tmp_path, images=imgs, labels=y)
    with pytest.raises(AdvisorError, match="--split test.*drop --split"):
        load_probe(str(plain), split="test")
    split = _npz(tmp_path, "s.npz", train_images=imgs, train_labels=y, val_images=imgs[:4], val_labels=y[:4])
    assert len(load_probe(str(split), split="val")) == 4
    with pytest.raises(AdvisorError, match=r"no 'test' split \(its splits: train, val\)"):
        load_probe(str(split), split="test")
    rows = ["path,label"] + [f"{f.relative_to(tmp_path)},{f.parent.name}" for f in sorted(image_folder.rglob("*.png"))]
    (tmp_path / "p.csv").write_text("\n".join(rows))
    with pytest.raises(AdvisorError, match="--split test: CSV probe"):
        load_probe(str(tmp_path / "p.csv"), split="test")


def _csv_rows(tmp_path, image_folder):
    return [f"{f.relative_to(tmp_path)},{f.parent.name}" for f in sorted(image_folder.rglob("*.png"))]


@pytest.mark.parametrize(
    "header, encoding, sep",
    [("path,label", "utf-8-sig", ","), ("Path,Label", "utf-8", ","), ("filename,class", "utf-8-sig", ","),
     ("Bild;Klasse", "utf-8-sig", ";"), ("", "utf-8-sig", ","), ("image\tlabel", "utf-8", "\t")],
    ids=["excel-bom", "capitalised", "other-names", "semicolon-excel", "no-header-bom", "tab"],
)
def test_csv_header_and_excel_bom(tmp_path, image_folder, header, encoding, sep):
    rows = [r.replace(",", sep) for r in _csv_rows(tmp_path, image_folder)]
    text = "\r\n".join(([header] if header else []) + rows) + "\r\n"
    (tmp_path / "p.csv").write_bytes(text.encode(encoding))
    p = load_probe(str(tmp_path / "p.csv"))
    assert len(p) == 24 and p.class_names == ("cat", "dog", "eel")


def test_csv_not_utf8_or_binary_isassert_one_line_error(tmp_path, run_cli, image_folder, weights_stub, advisor_home):
    rows = ["path,label"] + [r.replace(",cat", ",chat\xe9") for r in _csv_rows(tmp_path, image_folder)]
    (tmp_path / "l.csv").write_bytes("\n".join(rows).encode("latin-1"))
    assert_one_line_error(run_cli("rank", str(tmp_path / "l.csv"), "--models", weights_stub), "not UTF-8", "CSV UTF-8", home=advisor_home)
    (tmp_path / "b.csv").write_bytes(b"\x00\x01path,label\n")
    assert_one_line_error(run_cli("rank", str(tmp_path / "b.csv"), "--models", weights_stub), "NUL", home=advisor_home)


def test_validate_too_small_for_estimators_still_prints_the_measurements(tmp_path, run_cli, tiny_weights, advisor_home):
    from conftest import file_id

    root = write_images(tmp_path / "p", {"a": 2, "b": 2})  # hold-out 2, training part 2 (< 4 for estimators)
    model = file_id(tiny_weights["test_resnet"], "test_resnet")
    code, out, err = run_cli("validate", str(root), "--models", model, "--cuts", "pre_logits", "--epochs", "1", "--json", "-e", "logme")
    assert code == 0, err
    data = json.loads(out)
    assert [r["status"] for r in data["runs"]] == ["done"] and data["agreement"] == []
    assert "estimator agreement is skipped" in err and "Traceback" not in err


def test_validate_unknown_estimator_fails_before_training(run_cli, image_folder, tiny_weights, advisor_home):
    from conftest import file_id

    model = file_id(tiny_weights["test_resnet"], "test_resnet")
    assert_one_line_error(run_cli("validate", str(image_folder), "--models", model, "--epochs", "1", "-e", "logmee"), "logmee", home=advisor_home)


def test_domain_accepts_a_one_class_folder(tmp_path, run_cli):
    root = write_images(tmp_path / "p", {"only": 5})
    code, out, err = run_cli("domain", str(root), "--json")
    assert code == 0, err
    assert json.loads(out)["N"] == 5


def test_domain_unknown_model_is_an_error_with_did_you_mean(run_cli, image_folder):
    assert_one_line_error(run_cli("domain", str(image_folder), "--model", "tf_efficientnet_lit0"), "unknown model 'tf_efficientnet_lit0'",
              "did you mean 'tf_efficientnet_lite0'")


def test_domain_model_picks_the_reference_of_its_pretraining(run_cli, image_folder):
    from advisor.domain.references import model_source

    assert model_source("tf_efficientnet_lite0") == ("imagenet", None)  # catalog 'domain = "photos"' is a description
    assert model_source("resnet56_cifar10")[0] == "cifar10" and model_source("ccexam_mnist")[0] == "mnist"
    assert model_source("resnet50.a1_in1k") == ("imagenet", None)
    assert "declares no pre-training domain" in model_source("hf-hub:someone/model")[1]
    code, out, err = run_cli("domain", str(image_folder), "--model", "tf_efficientnet_lite0", "--json")
    assert code == 0 and json.loads(out)["source"] == "imagenet", err


# ---------------------------------------------------------------- kind 8: bounded decoding


def _smooth(w, h, seed=0):
    small = (np.random.default_rng(seed).random((6, 8, 3)) * 255).astype(np.uint8)
    return Image.fromarray(small).resize((w, h), Image.Resampling.BICUBIC)


@pytest.mark.parametrize("fmt, size", [("jpg", (2400, 1800)), ("png", (1400, 1050))])
def test_large_images_are_decoded_reduced(tmp_path, fmt, size):
    _smooth(*size).save(tmp_path / f"big.{fmt}")
    im = open_image(tmp_path / f"big.{fmt}")
    assert DECODE_SIDE <= min(im.size) < 2 * DECODE_SIDE and im.size[0] > im.size[1]
    full = open_image(tmp_path / f"big.{fmt}", None)
    assert full.size == size
    # what the model sees (shorter side resized to 256, as for a 224 px model at crop 0.875) barely changes
    a = np.asarray(im.resize((341, 256), Image.Resampling.BILINEAR), np.float64)
    b = np.asarray(full.resize((341, 256), Image.Resampling.BILINEAR), np.float64)
    assert np.abs(a - b).mean() < 1.5


def test_normal_size_images_decode_exactly_as_before(tmp_path):
    for name, size in (("a.jpg", (640, 480)), ("b.png", (300, 200)), ("c.jpg", (1023, 512))):
        _smooth(*size).save(tmp_path / name)
        with Image.open(tmp_path / name) as ref:
            assert np.array_equal(np.asarray(open_image(tmp_path / name)), np.asarray(ref.convert("RGB"))), name


def test_decoded_images_kept_within_a_budget(tmp_path, monkeypatch):
    import advisor.ranking.decoding as ranking
    from advisor.ranking.progress import Progress

    root = write_images(tmp_path / "p", {"a": 4, "b": 4}, size=24)
    monkeypatch.setattr(ranking, "KEEP_DECODED_BYTES", 3 * 24 * 24 * 3)
    probe, images = ranking.Decoded(Progress()).get(load_probe(str(root)))
    assert len(probe) == 8 and sorted(images) == [0, 1, 2]  # all checked, three kept, the rest decoded per model
    assert ranking.Decoded(Progress(), img_size=400).side == 800
    decoded = ranking.Decoded(Progress(), img_size=100)
    assert decoded.side == DECODE_SIDE
    # a model that resizes to more than was decoded gets its images decoded again at its side
    lite0 = {"input_size": (3, 224, 224), "crop_pct": 0.875}
    b7 = {"input_size": (3, 600, 600), "crop_pct": 0.949}
    same, kept = decoded.for_model(probe, images, lite0)
    assert same is probe and kept is images
    big, none = decoded.for_model(probe, images, b7)
    assert big.decode_side == 633 and none == {} and probe.decode_side == DECODE_SIDE


def test_a_cached_rerun_still_says_which_images_were_skipped(tmp_path, run_cli, tiny_weights, advisor_home):
    """The second run reads the unreadable files from the cache instead of decoding them: it says so too."""
    from conftest import file_id

    root = write_images(tmp_path / "p", {"a": 4, "b": 4})
    (root / "a" / "a_001.png").write_bytes(b"corrupt")
    model = file_id(tiny_weights["test_resnet"], "test_resnet")
    errs = []
    for _ in range(2):
        code, _, err = run_cli("rank", str(root), "--models", model, "-e", "knn", "--img-size", "32")
        assert code == 0, err
        errs.append(err)
    assert "skipped 1 unreadable image(s) of 8" in errs[0] and "a_001.png" in errs[0]
    assert "skipped 1 unreadable image(s) of 8 (found by an earlier run)" in errs[1] and "a_001.png" in errs[1]
    assert "features from cache" in errs[1]
