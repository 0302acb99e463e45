"""Every architecture the service builds, with its family's training recipe.

Adding an architecture is one `register(...)` line below (plus a builder in
core/models/ when no existing one fits). The service, the spec's description, the
CLI help and the dashboard read the names from here; nothing here imports torch.

Weight decay is what makes LoRITa work: on a composition of N linear maps the L2
penalty on the factors acts as a Schatten-(2/N) penalty on their product and
pushes it towards low rank. The per-family values live in the families below, so a
benchmark tunes them in one place.

Each family also declares how a job that starts from the user's trained weights
fine-tunes (its "from pretrained" recipe, `default_recipe(arch, pretrained=True)`).
The composition then starts at the balanced split of those weights, which already
computes the user's model, so a few epochs at a low learning rate are enough; the
weight decay is what moves the spectrum, so it is larger than from scratch (the
training is 4 epochs instead of 30). AdamW everywhere: its decay is decoupled from
the gradient scale, so the same value shrinks every factor at the same pace whatever
the user's model was trained with. What sets how far the spectrum moves is the
decay per step, lr x weight decay: on the MNIST FCN (bench/README.md, "Warm start";
`python -m bench.warm_start --only fcn-mnist`) lr 5e-4 with decay 1.0 (5e-4 a step)
for 3 epochs and one epoch of fine-tuning after truncation, distilled from the user's
model, cut 89.4% of the parameters within 0.15 point on validation (98.50% test from a
98.56% model) and 91.6% within half a point (98.25%); the earlier lr 3e-4 with decay 0.1
(3e-5 a step) reached 89.1% within 0.5 point after 4 epochs. The CNN and ViT values
are the earlier, gentler ones: on a ResNet20 a stronger decay per step either left the
spectrum in place (up to 3e-3 a step) or cost 13 points (1e-2), bench/README.md.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from core.catalog.library_names import library_names
from core.catalog.registry import ArchPrefix, ArchRegistry, Family, Recipe
from core.errors import SpecError

REGISTRY = ArchRegistry()
register = REGISTRY.register

# Random crops of a few pixels only make sense once an image has some room.
MIN_AUGMENT_SIZE = 28

_SGD = Recipe(
    epochs=30,
    weight_decay=5e-4,
    batch_size=128,
    optimizer="sgd",
    lr=0.05,
    momentum=0.9,
    schedule="cosine",
    label_smoothing=0.1,
)

# Fine-tuning a trained CNN from its balanced split (see the module docstring).
# The other families' recipes are these two with a few fields changed (`replace`).
_CNN_PRETRAINED = replace(_SGD, epochs=4, weight_decay=0.1, optimizer="adamw", lr=3e-4)

# --- families: how their members train ---------------------------------------------------

# A job from the user's weights fine-tunes one epoch after truncation in every family:
# the fine-tuning distils from the user's model (compress.distill), the one teacher
# such a job always has (bench/README.md, "Warm start").
_WARM_FINETUNE_EPOCHS = 1

# The FCN sees pixels as a flat vector, where shifting them only blurs the classes.
# Measured on MNIST, 8 epochs, N=3 (bench/README.md, "FCN recipe"): AdamW with
# decoupled weight decay and a one-cycle schedule ends 0.2-0.3 points above Adam with
# L2 1e-4 and cosine, with ranks as low; 3 epochs of fine-tuning the truncated model
# recover most of what truncation costs (97.92% -> 98.2% at 6.2-6.6% of the
# parameters), so they are on by default here. The peak step is 1e-3 with decay 0.2,
# not 2e-3 with 0.05: the same accuracy at 0.1-0.3% more of the parameters, and no
# loss spike at the schedule's peak, which the larger step had on seed 0 on two of
# three machines (97.27% at 5.1%, a job lost to plain training).
REGISTRY.add_family(
    Family(
        "fcn",
        replace(
            _SGD,
            epochs=10,
            weight_decay=0.2,
            optimizer="adamw",
            lr=1e-3,
            schedule="onecycle",
            label_smoothing=0.0,
        ),
        augment=False,
        finetune_epochs=3,
        # The measured warm start (module docstring): 3 epochs, then 1 of fine-tuning.
        pretrained_recipe=replace(
            _CNN_PRETRAINED, epochs=3, lr=5e-4, weight_decay=1.0, label_smoothing=0.0
        ),
        pretrained_finetune_epochs=_WARM_FINETUNE_EPOCHS,
    )
)
# A CNN trained from scratch loses accuracy fast under truncation, and one epoch of
# fine-tuning wins most of it back: ResNet20 N=3 on the full Fashion-MNIST, 40% of the
# FLOPs kept, 88.2% truncated -> 93.0% fine-tuned against 93.6% uncompressed
# (bench/README.md, "Against the peers"). So these families fine-tune one epoch and
# search the ranks after it: the job at half a point then cuts 32.7% of the FLOPs
# instead of 3.6% ("Search after fine-tuning").
for _name in ("vgg", "resnet", "torchvision", "timm"):
    REGISTRY.add_family(
        Family(
            _name,
            _SGD,
            channels_last=True,
            finetune_epochs=1,
            finetune_search=True,
            pretrained_recipe=_CNN_PRETRAINED,
            pretrained_finetune_epochs=_WARM_FINETUNE_EPOCHS,
        )
    )
REGISTRY.add_family(
    Family(
        "vit",
        replace(_SGD, weight_decay=5e-2, optimizer="adamw", lr=1e-3),
        # A tenth of the from-scratch rate: attention is the part most easily thrown off.
        pretrained_recipe=replace(_CNN_PRETRAINED, lr=1e-4),
        pretrained_finetune_epochs=_WARM_FINETUNE_EPOCHS,
    )
)

# --- architectures -----------------------------------------------------------------------

register("fcn", "fcn", "core.models.fcn:build_fcn", options={"hidden"})
register("vgg11", "vgg", "core.models.vgg:VGG", fixed={"layout": "vgg11"})
register("vgg13", "vgg", "core.models.vgg:VGG", fixed={"layout": "vgg13"})
register("vgg16", "vgg", "core.models.vgg:VGG", fixed={"layout": "vgg16"})
register("vgg19", "vgg", "core.models.vgg:VGG", fixed={"layout": "vgg19"})
# VGG11 as first published, without BatchNorm (a lower learning rate: no norm to steady it).
register(
    "vgg11_nobn",
    "vgg",
    "core.models.vgg:VGG",
    fixed={"layout": "vgg11", "batch_norm": False},
    recipe={"lr": 0.01},
)
register("resnet20", "resnet", "core.models.resnet:build_resnet", fixed={"depth": 20})
register("resnet56", "resnet", "core.models.resnet:build_resnet", fixed={"depth": 56})
# As in the paper's ViT, the patch embedding and the classification head stay plain.
register(
    "simplevit",
    "vit",
    "core.models.vit:SimpleViT",
    options={"patch_size", "dim", "depth", "heads", "mlp_dim"},
    exclude=("patch_embed*", "head*"),
)

# --- libraries of models, addressed as PREFIX + NAME -------------------------------------


def _add_library(prefix: str, family: str, builder: str, what: str) -> ArchPrefix:
    """Declare a library's models as PREFIX + NAME, NAME from its static list of names
    (core.catalog.library_names); `what` names a member in messages."""
    names = frozenset(library_names(family))
    # resnet18 is in every library's list: the example the messages show.
    example = f"{prefix}resnet18"
    return REGISTRY.add_prefix(ArchPrefix(prefix, family, builder, names, what, example))


TORCHVISION = _add_library(
    "tv:", "torchvision", "core.models.tv:build_torchvision", "torchvision classification model"
)
# timm's models, CNNs and transformers alike, train like torchvision's by default.
TIMM = _add_library("timm:", "timm", "core.models.timm:build_timm", "timm model")


# --- lookups -----------------------------------------------------------------------------


def available_archs() -> list[str]:
    """The registered names (prefixed libraries not listed member by member)."""
    return REGISTRY.names()


def is_known_arch(name: str) -> bool:
    try:
        REGISTRY.lookup(name)
    except SpecError:
        return False
    return True


def arch_family(arch: str) -> str:
    """The family name of an architecture (recipes are chosen per family)."""
    return REGISTRY.lookup(arch).family


def default_exclude(arch: str) -> list[str]:
    """Layer-name globs the engine leaves plain for this architecture."""
    return list(REGISTRY.lookup(arch).exclude)


def uses_channels_last(arch: str) -> bool:
    return REGISTRY.family_of(arch).channels_last


def default_recipe(
    arch: str, *, image_size: int | None = None, pretrained: bool = False
) -> dict[str, Any]:
    """Training fields (TrainSpec names) for `arch`; cuda-only switches are left out.

    `pretrained`: the job starts from the user's weights (the family's "from
    pretrained" recipe) rather than from a random init. Augmentation is for image
    models on images large enough to crop; without an image size it is off.
    """
    recipe = vars(REGISTRY.recipe_for(arch, pretrained=pretrained)).copy()
    recipe["augment"] = (
        REGISTRY.family_of(arch).augment
        and image_size is not None
        and image_size >= MIN_AUGMENT_SIZE
    )
    return recipe


def default_finetune_epochs(arch: str, *, pretrained: bool = False) -> int:
    """Epochs of fine-tuning after truncation when a job leaves compress.finetune_epochs out
    (`pretrained`: the job starts from the user's weights)."""
    return REGISTRY.family_of(arch).finetune_epochs_for(pretrained=pretrained)


def default_finetune_search(arch: str, *, pretrained: bool = False) -> bool:
    """Whether the accuracy search holds its tolerance after fine-tuning when a job leaves
    compress.finetune_search out."""
    return REGISTRY.family_of(arch).finetune_search_for(pretrained=pretrained)


def arch_help() -> str:
    """The architecture choices in words (spec description, CLI help, messages)."""
    return REGISTRY.describe()
