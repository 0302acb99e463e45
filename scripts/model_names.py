"""Regenerate the static model-name lists (core/catalog/*_names.txt) from the
installed timm and torchvision.

Run after changing either version: `.venv/bin/python scripts/model_names.py`.
tests/core/test_timm.py and tests/core/test_models.py fail while a list and the
installed library disagree.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from core.catalog.library_names import VERSION_LINE, names_file

CATALOG = Path(__file__).resolve().parent.parent / "core" / "catalog"

HEADER = """\
# Names of the {library} models ({listing}), one a line.
# Written by scripts/model_names.py; the API checks "{prefix}NAME" against this list
# without importing {library} (or torch).
{version_line}{version}
"""


def _timm() -> tuple[str, list[str]]:
    import timm

    return timm.__version__, timm.list_models()


def _torchvision() -> tuple[str, list[str]]:
    import torchvision
    from torchvision import models

    # The local part ("+cu130") names the build, not the models.
    version = torchvision.__version__.partition("+")[0]
    return version, models.list_models(module=models)


# library: (prefix, how the names are listed, what lists them)
LIBRARIES: dict[str, tuple[str, str, Callable[[], tuple[str, list[str]]]]] = {
    "timm": ("timm:", "timm.list_models()", _timm),
    "torchvision": ("tv:", "torchvision.models.list_models(module=models)", _torchvision),
}


def main() -> None:
    for library, (prefix, listing, read) in LIBRARIES.items():
        version, names = read()
        header = HEADER.format(
            library=library,
            listing=listing,
            prefix=prefix,
            version_line=VERSION_LINE,
            version=version,
        )
        target = CATALOG / names_file(library)
        target.write_text(header + "".join(f"{name}\n" for name in names), encoding="utf-8")
        print(f"wrote {len(names)} names of {library} {version} to {target}")


if __name__ == "__main__":
    main()
