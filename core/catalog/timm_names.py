"""Names of the timm models, and the timm version they were listed from (timm_names.txt)."""

from core.catalog.library_names import library_names, library_version

TIMM_VERSION = library_version("timm")
TIMM_MODELS: tuple[str, ...] = library_names("timm")
