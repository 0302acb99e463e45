"""The CLI's words for what the engine calls by spec paths.

Messages from the spec, the engine and the result warnings name fields the way a
job document does (`compress.budget`, `train.lr`); on the command line the same
things are flags (`--budget`, `--lr`). The map is read off the parser itself: a
flag whose destination is a spec field's name stands for that field, so a flag
added later is translated without touching this module.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from core.catalog import BUILTIN_DATASETS, is_file_reference, parse_upload_reference
from core.spec import JobSpec, did_you_mean

# Spec fields whose flag has another name than the field.
RENAMED = {"comparisons": "compare"}
VALUE_ERROR_PREFIX = "Value error, "


def spec_flags(parser: argparse.ArgumentParser) -> dict[str, str]:
    """{"train.epochs": "--epochs", "compress.budget": "--budget", ...} for `parser`."""
    options = {
        action.dest: max(action.option_strings, key=len)
        for action in parser._actions  # argparse has no public accessor for these
        if action.option_strings
    }
    flags: dict[str, str] = {}
    for section, field in JobSpec.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and hasattr(annotation, "model_fields"):
            for name in annotation.model_fields:
                if name in options:
                    flags[f"{section}.{name}"] = options[name]
        elif RENAMED.get(section, section) in options:
            flags[section] = options[RENAMED.get(section, section)]
    return flags


class CliTerms:
    """Rewrites spec paths into flags in any message shown on the command line."""

    def __init__(self, parser: argparse.ArgumentParser) -> None:
        self.flags = spec_flags(parser)
        paths = sorted((path for path in self.flags if "." in path), key=len, reverse=True)
        self._pattern = (
            re.compile(r"(?<![\w.-])(" + "|".join(map(re.escape, paths)) + r")(?![\w])")
            if paths
            else None
        )

    def text(self, message: str) -> str:
        if self._pattern is None:
            return message
        return self._pattern.sub(lambda match: self.flags[match.group(1)], message)

    def validation_problems(self, errors: list[dict]) -> str:
        """pydantic errors of the spec as "--flag: message; ..."."""
        problems = []
        for item in errors:
            path = ".".join(str(part) for part in item["loc"])
            message = str(item["msg"])
            if message.startswith(VALUE_ERROR_PREFIX):
                message = message[len(VALUE_ERROR_PREFIX) :]
            where = self.flags.get(path)
            problems.append(f"{where}: {self.text(message)}" if where else self.text(message))
        return "; ".join(problems)


def dataset_problem(dataset: str) -> str | None:
    """Why --dataset cannot be run locally, or None. The CLI runs built-ins and files."""
    if dataset in BUILTIN_DATASETS:
        return None
    choices = f"choose one of {', '.join(BUILTIN_DATASETS)}, or give a .npz / .zip file"
    if parse_upload_reference(dataset) is not None:
        return (
            f"--dataset {dataset} names a dataset uploaded to a lorita service; locally, {choices}"
        )
    if is_file_reference(dataset):
        path = Path(dataset).expanduser()
        return None if path.is_file() else f"--dataset: no such file {dataset}"
    if Path(dataset).expanduser().exists():
        return f"--dataset: {dataset} is not a .npz or .zip file; {choices}"
    suggestion = did_you_mean(dataset, BUILTIN_DATASETS)
    return f"--dataset: unknown dataset {dataset!r}; {suggestion}{choices}"
