"""The architecture registry: what an architecture is, declared as data.

An architecture is a name, a family (which carries the default training recipe),
a builder named as "module:function" (imported only when a model is built, so the
registry needs neither torch nor the model code), fixed builder arguments, the
build options a user may set, and the layer-name globs left unfactorized.

A family may carry a second recipe, used when a job starts from the user's trained
weights instead of a random init (`recipe_for(arch, pretrained=True)`): a short
fine-tuning at a lower learning rate, with the weight decay that pulls the balanced
split's spectrum down. A family without one gets `fine_tune_recipe` of its recipe.

A prefix ("tv:") stands for a whole library of models: "tv:NAME" is known when NAME
is in the prefix's static list of names, and is built by the prefix's builder with
`name=NAME`. The declarations themselves live in core.catalog.archs.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from core.errors import SpecError


@dataclass(frozen=True)
class Recipe:
    """Default training fields (TrainSpec names) of a family; a spec's values win."""

    epochs: int
    weight_decay: float  # the LoRITa penalty: see core.catalog.archs
    batch_size: int
    optimizer: str
    lr: float
    momentum: float
    schedule: str
    label_smoothing: float


# How many epochs a warm start fine-tunes for when its family declares no recipe of its own.
FINE_TUNE_EPOCHS = 4
# How many names a "not a ... model" message lists before it only suggests close ones.
MAX_LISTED_NAMES = 100


def fine_tune_recipe(recipe: Recipe) -> Recipe:
    """The fallback "from pretrained" recipe: a few epochs at a tenth of the learning rate
    (a trained model is near a minimum; the full rate would throw it out of it)."""
    return dataclasses.replace(
        recipe, epochs=min(recipe.epochs, FINE_TUNE_EPOCHS), lr=recipe.lr / 10
    )


@dataclass(frozen=True)
class Family:
    """Architectures trained the same way.

    recipe: training from scratch (LoRITa as the paper runs it).
    pretrained_recipe: fine-tuning from the user's weights (the balanced split);
      None means `fine_tune_recipe(recipe)`.
    augment: random crop + flip help (images seen as images, not as flat vectors).
    channels_last: convolutions gain from the NHWC memory layout on CUDA.
    finetune_epochs: epochs the compressed model is fine-tuned after truncation when the
      job does not say (compress.finetune_epochs), where the bench shows it pays.
    pretrained_finetune_epochs: the same for a job that starts from the user's weights
      (None: as from scratch).
    finetune_search: from scratch, the accuracy search holds its tolerance after the
      fine-tuning rather than before (compress.finetune_search), where truncation costs
      accuracy that fine-tuning wins back. A job from the user's weights never does by
      default: its fine-tuning recovers the user's model at the search's own choice.
    """

    name: str
    recipe: Recipe
    augment: bool = True
    channels_last: bool = False
    pretrained_recipe: Recipe | None = None
    finetune_epochs: int = 0
    pretrained_finetune_epochs: int | None = None
    finetune_search: bool = False

    def recipe_for(self, *, pretrained: bool = False) -> Recipe:
        if not pretrained:
            return self.recipe
        return self.pretrained_recipe or fine_tune_recipe(self.recipe)

    def finetune_epochs_for(self, *, pretrained: bool = False) -> int:
        if pretrained and self.pretrained_finetune_epochs is not None:
            return self.pretrained_finetune_epochs
        return self.finetune_epochs

    def finetune_search_for(self, *, pretrained: bool = False) -> bool:
        return self.finetune_search and not pretrained


@dataclass(frozen=True)
class Arch:
    """One buildable architecture; `builder(num_classes, in_channels, image_size,
    **fixed, **options)` returns the untrained nn.Module."""

    name: str
    family: str
    builder: str
    fixed: Mapping[str, Any] = field(default_factory=dict)
    options: frozenset[str] = frozenset()
    exclude: tuple[str, ...] = ()
    # Recipe fields that differ from the family's (e.g. a smaller lr for a model without BN).
    # They apply to the from-scratch recipe only: a warm start uses its family's own.
    recipe: Mapping[str, Any] = field(default_factory=dict)

    def load_builder(self) -> Callable[..., Any]:
        module, _, function = self.builder.partition(":")
        return getattr(importlib.import_module(module), function)


@dataclass(frozen=True)
class ArchPrefix:
    """A library of models addressed as PREFIX + NAME (e.g. "tv:resnet18")."""

    prefix: str
    family: str
    builder: str  # called with name=NAME besides the shape arguments
    names: frozenset[str]
    what: str  # "torchvision classification model", for messages
    example: str
    exclude: tuple[str, ...] = ()


class ArchRegistry:
    def __init__(self) -> None:
        self.families: dict[str, Family] = {}
        self.archs: dict[str, Arch] = {}
        self.prefixes: dict[str, ArchPrefix] = {}

    # --- declaring ---------------------------------------------------------------------

    def add_family(self, family: Family) -> Family:
        if family.name in self.families:
            raise ValueError(f"family {family.name!r} is declared twice")
        self.families[family.name] = family
        return family

    def register(
        self,
        name: str,
        family: str,
        builder: str,
        *,
        fixed: Mapping[str, Any] | None = None,
        options: Iterable[str] = (),
        exclude: Iterable[str] = (),
        recipe: Mapping[str, Any] | None = None,
    ) -> Arch:
        arch = Arch(
            name,
            family,
            builder,
            dict(fixed or {}),
            frozenset(options),
            tuple(exclude),
            dict(recipe or {}),
        )
        if name in self.archs:
            raise ValueError(f"architecture {name!r} is registered twice")
        if family not in self.families:
            raise ValueError(f"architecture {name!r}: unknown family {family!r}")
        if ":" in name or ":" not in builder:
            raise ValueError(f"architecture {name!r}: names have no ':', builders are mod:func")
        unknown = set(arch.recipe) - {f.name for f in dataclasses.fields(Recipe)}
        if unknown:
            raise ValueError(f"architecture {name!r}: unknown recipe fields {sorted(unknown)}")
        self.archs[name] = arch
        return arch

    def add_prefix(self, prefix: ArchPrefix) -> ArchPrefix:
        if prefix.family not in self.families:
            raise ValueError(f"prefix {prefix.prefix!r}: unknown family {prefix.family!r}")
        self.prefixes[prefix.prefix] = prefix
        return prefix

    # --- looking up --------------------------------------------------------------------

    def names(self) -> list[str]:
        return list(self.archs)

    def lookup(self, name: str) -> Arch:
        """The Arch of a registered name or of PREFIX:NAME; SpecError naming the choices."""
        name = name.strip()
        if name in self.archs:
            return self.archs[name]
        for prefix in self.prefixes.values():
            if name.startswith(prefix.prefix):
                member = name[len(prefix.prefix) :]
                if member not in prefix.names:
                    raise SpecError(f"{name} is not a {prefix.what}; {_choices(prefix, member)}")
                return Arch(
                    name, prefix.family, prefix.builder, {"name": member}, exclude=prefix.exclude
                )
        raise SpecError(f"unknown arch {name!r}; choose one of {self.describe()}")

    def family_of(self, name: str) -> Family:
        return self.families[self.lookup(name).family]

    def recipe_of(self, name: str) -> Recipe:
        return self.recipe_for(name)

    def recipe_for(self, name: str, *, pretrained: bool = False) -> Recipe:
        """The default training recipe of `name`: from scratch, or (`pretrained`) the
        fine-tuning of the user's weights. A spec's own values win over either."""
        arch = self.lookup(name)
        family = self.families[arch.family]
        if pretrained:
            return family.recipe_for(pretrained=True)
        return dataclasses.replace(family.recipe, **arch.recipe)

    def describe(self) -> str:
        """The choices in words, for error messages, the spec and the CLI help."""
        prefixes = [
            f"{p.prefix}NAME for a {p.what} (e.g. {p.example})" for p in self.prefixes.values()
        ]
        return ", ".join(self.names()) + "".join(f", or {text}" for text in prefixes)


def _choices(prefix: ArchPrefix, member: str = "") -> str:
    """The names to choose from: all of a short list, the closest ones of a long one."""
    if len(prefix.names) <= MAX_LISTED_NAMES:
        return f"choose one of {', '.join(sorted(prefix.names))}"
    close = difflib.get_close_matches(member, sorted(prefix.names), n=8, cutoff=0.5)
    hint = f"close names: {', '.join(close)}; " if close else ""
    return f"{hint}{len(prefix.names)} names are known (e.g. {prefix.example})"
