"""What a job may name, known without torch: architectures, families, datasets.

The API validates job specs and dataset references with this package alone, so
its process never imports torch (tests/test_torch_free_api.py); the engine builds
models and loads data from the same declarations (core.models, core.data).
Only the standard library is used here (plain dataclasses).
"""

from core.catalog.archs import (
    MIN_AUGMENT_SIZE,
    REGISTRY,
    TIMM,
    TORCHVISION,
    arch_family,
    arch_help,
    available_archs,
    default_exclude,
    default_finetune_epochs,
    default_finetune_search,
    default_recipe,
    is_known_arch,
    uses_channels_last,
)
from core.catalog.datasets import (
    BUILTIN_DATASETS,
    BUILTINS,
    FILE_SUFFIXES,
    UPLOAD_PREFIX,
    BuiltinDataset,
    DatasetInfo,
    available_datasets,
    dataset_help,
    is_dataset_reference,
    is_file_reference,
    parse_upload_reference,
    upload_reference,
)
from core.catalog.registry import Arch, ArchPrefix, ArchRegistry, Family, Recipe

__all__ = [
    "BUILTINS",
    "BUILTIN_DATASETS",
    "FILE_SUFFIXES",
    "MIN_AUGMENT_SIZE",
    "REGISTRY",
    "TIMM",
    "TORCHVISION",
    "UPLOAD_PREFIX",
    "Arch",
    "ArchPrefix",
    "ArchRegistry",
    "BuiltinDataset",
    "DatasetInfo",
    "Family",
    "Recipe",
    "arch_family",
    "arch_help",
    "available_archs",
    "available_datasets",
    "dataset_help",
    "default_exclude",
    "default_finetune_epochs",
    "default_finetune_search",
    "default_recipe",
    "is_dataset_reference",
    "is_file_reference",
    "is_known_arch",
    "parse_upload_reference",
    "upload_reference",
    "uses_channels_last",
]
