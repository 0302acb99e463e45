"""Names of the torchvision classification models (torchvision_names.txt)."""

from core.catalog.library_names import library_names

TORCHVISION_MODELS: tuple[str, ...] = library_names("torchvision")
