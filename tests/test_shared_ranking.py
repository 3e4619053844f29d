"""Real checkpoints on real data (../shared): the ranking must follow what a linear probe says —
ImageNet models beat CIFAR ResNets on flowers17, and the order flips on cifar10_small."""

import pytest
from conftest import SHARED, needs_shared

import advisor

pytestmark = needs_shared
PAIR = ["tf_efficientnet_lite0", "resnet56_cifar10"]


def _winner(target: str, estimator: str, models=PAIR, max_images=200) -> list[str]:
    result = advisor.rank(str(SHARED / "data" / target), models, [estimator], max_images=max_images,
                          weights_dir=SHARED / "models", offline=True)
    return [r["model"] for r in sorted(result.rows, key=lambda r: r["rank"])]


@pytest.mark.parametrize("estimator", ["logme", "knn"])
def test_imagenet_model_wins_on_flowers_and_cifar_model_wins_on_cifar(estimator):
    assert _winner("flowers17", estimator)[0] == "tf_efficientnet_lite0"
    assert _winner("cifar10_small", estimator)[0] == "resnet56_cifar10"


@pytest.mark.slow
@pytest.mark.parametrize("estimator", ["logme", "knn"])
def test_all_shared_models_full_train_split(estimator):
    models = ["tf_efficientnet_lite0", "tf_efficientnet_lite1", "tf_efficientnet_lite2",
              "mobilenetv2_100_same_dogs19", "resnet20_cifar10", "resnet56_cifar10"]
    flowers = _winner("flowers17", estimator, models, max_images=None)
    cifar = _winner("cifar10_small", estimator, models, max_images=None)
    assert set(flowers[:4]) == set(models[:4])  # every ImageNet model above every CIFAR ResNet
    assert cifar[0] in ("resnet20_cifar10", "resnet56_cifar10")
