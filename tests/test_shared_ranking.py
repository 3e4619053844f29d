"""Real checkpoints on real data (../shared): the ranking must follow what a linear probe says —
ImageNet models beat CIFAR ResNets on flowers17, and the order flips on cifar10_small."""

import pytest
from conftest import SHARED, needs_shared

import advisor

pytestmark = needs_shared
PAIR = ["tf_efficientnet_lite0", "resnet56_cifar10"]
# 100 images (stratified): the winner leads by a wide margin at this size (knn 0.79 vs 0.20 on
# flowers17, 0.81 vs 0.42 on cifar10_small; logme 0.24 vs 0.03 and 0.10 vs -0.14).
MAX_IMAGES = 100


def _winners(target: str, estimators: list[str], models=PAIR, max_images=MAX_IMAGES) -> dict[str, list[str]]:
    """Each estimator's ranking of ``models`` on ``target``: one ``rank`` call, features extracted once."""
    result = advisor.rank(str(SHARED / "data" / target), models, estimators, max_images=max_images,
                          weights_dir=SHARED / "models", offline=True)
    return {e: [r["model"] for r in sorted((r for r in result.rows if r["estimator"] == e), key=lambda r: r["rank"])]
            for e in estimators}


@pytest.mark.parametrize("target, winner", [("flowers17", "tf_efficientnet_lite0"), ("cifar10_small", "resnet56_cifar10")])
def test_imagenet_model_wins_on_flowers_and_cifar_model_wins_on_cifar(target, winner):
    for estimator, ranking in _winners(target, ["logme", "knn"]).items():
        assert ranking[0] == winner, (estimator, ranking)


@pytest.mark.slow
def test_all_shared_models_full_train_split():
    models = ["tf_efficientnet_lite0", "tf_efficientnet_lite1", "tf_efficientnet_lite2",
              "mobilenetv2_100_same_dogs19", "resnet20_cifar10", "resnet56_cifar10"]
    flowers = _winners("flowers17", ["logme", "knn"], models, max_images=None)
    cifar = _winners("cifar10_small", ["logme", "knn"], models, max_images=None)
    for estimator in ("logme", "knn"):
        assert set(flowers[estimator][:4]) == set(models[:4]), estimator  # every ImageNet model above every CIFAR ResNet
        assert cifar[estimator][0] in ("resnet20_cifar10", "resnet56_cifar10"), estimator
