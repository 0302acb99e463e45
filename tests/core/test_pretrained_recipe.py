"""The "from pretrained" recipes: a job that starts from the user's weights fine-tunes
briefly at a low learning rate, with the weight decay that drives LoRITa."""

import pytest

from core.catalog import REGISTRY, Family, Recipe, default_finetune_epochs, default_recipe
from core.catalog.registry import ArchRegistry, fine_tune_recipe

SCRATCH = Recipe(30, 5e-4, 128, "sgd", 0.05, 0.9, "cosine", 0.1)


def test_the_fcn_warm_start_is_the_measured_one():
    recipe = REGISTRY.recipe_for("fcn", pretrained=True)
    assert (recipe.epochs, recipe.optimizer, recipe.weight_decay, recipe.lr) == (
        3,
        "adamw",
        1.0,
        5e-4,
    )
    # Then one epoch of fine-tuning after truncation (three from scratch).
    assert default_finetune_epochs("fcn", pretrained=True) == 1
    assert default_finetune_epochs("fcn") == 3
    assert default_finetune_epochs("resnet20", pretrained=True) == 1
    assert default_finetune_epochs("resnet20") == 1  # and searched after (finetune_search)
    assert REGISTRY.recipe_for("fcn") == REGISTRY.recipe_of("fcn")  # scratch is unchanged


@pytest.mark.parametrize(
    "arch", ["fcn", "vgg16", "resnet20", "simplevit", "tv:resnet18", "timm:convnext_atto"]
)
def test_every_family_fine_tunes_shorter_and_slower_than_it_trains(arch):
    scratch, warm = REGISTRY.recipe_for(arch), REGISTRY.recipe_for(arch, pretrained=True)
    assert warm.epochs < scratch.epochs and warm.lr < scratch.lr
    assert warm.weight_decay > 0  # without it nothing pulls the spectrum down
    fields = default_recipe(arch, image_size=32, pretrained=True)
    assert (fields["epochs"], fields["lr"]) == (warm.epochs, warm.lr)
    assert fields["augment"] == default_recipe(arch, image_size=32)["augment"]


def test_a_family_without_one_gets_the_fine_tune_rule():
    registry = ArchRegistry()
    registry.add_family(Family("plain", SCRATCH))
    registry.register("net", "plain", "core.models.vgg:VGG", recipe={"lr": 0.01})
    warm = registry.recipe_for("net", pretrained=True)
    assert warm == fine_tune_recipe(SCRATCH)
    assert (warm.epochs, warm.lr, warm.weight_decay) == (4, 0.005, 5e-4)
    assert registry.recipe_for("net").lr == 0.01  # an entry's override is for scratch
