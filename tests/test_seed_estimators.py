"""Bad inputs to the seed estimators (CKA, II, DEPARA): each fails with one clear line or is
reported on its row, never a crash or a NaN score."""

import numpy as np
import pytest
from conftest import write_images

import advisor
from advisor.estimators import safe_score

RNG = np.random.default_rng(0)
X = RNG.normal(size=(40, 8))
REF = np.eye(4)[np.arange(40) % 4]
ATTR = RNG.normal(size=(40, 16))


@pytest.mark.parametrize("name", ["cka", "cka-debiased", "cka-rbf", "ii", "ii-reverse", "depara", "depara-edges"])
@pytest.mark.parametrize(
    "features, reference, message",
    [
        (X, REF[:30], "same"),  # a reference with a different number of images
        (np.ones((40, 8)), REF, "constant"),
        (np.where(np.arange(320).reshape(40, 8) == 7, np.nan, X), REF, "non-finite"),
    ],
    ids=["reference-size", "constant-features", "nan-features"],
)
def test_bad_arrays_are_reported_per_row(name, features, reference, message):
    score, error = safe_score(advisor.get_estimator(name), features, np.arange(40) % 4, reference=reference,
                              attributions=ATTR, reference_attributions=None)
    assert score is None and error is not None and "\n" not in error
    assert message in error.lower() or "edge" in error.lower(), error


def test_tiny_probe_is_one_line(run_cli, tmp_path, tiny_weights):
    from conftest import file_id

    write_images(tmp_path / "p", {"a": 2, "b": 1})
    code, _, err = run_cli("layers", file_id(tiny_weights["test_resnet"], "test_resnet"), str(tmp_path / "p"), "-e", "cka")
    assert code == 2 and "has 3 images" in err and "at least 4" in err and len(err.strip().splitlines()) == 1
