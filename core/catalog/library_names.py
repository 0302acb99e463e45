"""The static lists of the models in a library of models (timm, torchvision).

Each list is a package data file next to this module, `<library>_names.txt`: one
model name a line, with "#" comment lines on top, one of them "# version: X" (the
library's version the list was taken from). Kept as data so the API can check
"timm:NAME" or "tv:NAME" without importing torch or the library; the files are
written by scripts/model_names.py, and tests/core fails when an installed library
lists other names.
"""

from __future__ import annotations

from importlib import resources

VERSION_LINE = "# version: "


def names_file(library: str) -> str:
    return f"{library}_names.txt"


def _lines(library: str) -> list[str]:
    data = resources.files(__package__).joinpath(names_file(library))
    return data.read_text(encoding="utf-8").splitlines()


def library_names(library: str) -> tuple[str, ...]:
    """The model names of `library`, in the order the library lists them."""
    return tuple(line for line in _lines(library) if line and not line.startswith("#"))


def library_version(library: str) -> str:
    """The version of `library` whose names the list holds."""
    for line in _lines(library):
        if line.startswith(VERSION_LINE):
            return line.removeprefix(VERSION_LINE).strip()
    raise ValueError(f"{names_file(library)} has no {VERSION_LINE.strip()!r} line")
