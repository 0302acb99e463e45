"""Readers for the deployment files: compose, Dockerfiles, .env.example, settings, pins."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import tomllib

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yml"
MULTI_HOST_FILE = REPO / "docker" / "compose.multi-host.yml"
API_DOCKERFILE = REPO / "docker" / "api.Dockerfile"
WORKER_DOCKERFILE = REPO / "docker" / "worker.Dockerfile"
ENV_EXAMPLE = REPO / ".env.example"

# ${NAME}, ${NAME:-default}, ${NAME:?message}, ... but not the escaped $${NAME}.
COMPOSE_VARIABLE = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])([^}]*))?\}")


@dataclass
class Instruction:
    keyword: str  # upper case: FROM, ARG, RUN, ...
    arguments: str  # continuation lines joined, comments removed
    stage: str | None  # name of the build stage it belongs to


@dataclass
class Dockerfile:
    path: Path
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def stages(self) -> list[str]:
        return [i.stage for i in self.all("FROM") if i.stage]

    def in_stage(self, stage: str) -> list[Instruction]:
        return [i for i in self.instructions if i.stage == stage]

    def arg_defaults(self, name: str) -> list[str]:
        """Every default given to ARG `name` (global or in any stage)."""
        values = []
        for instruction in self.all("ARG"):
            key, _, value = instruction.arguments.partition("=")
            if key.strip() == name and value:
                values.append(value.strip().strip('"'))
        return values

    def env(self, stage: str | None = None) -> dict[str, str]:
        """ENV KEY=VALUE pairs (of one stage, or all)."""
        pairs: dict[str, str] = {}
        for instruction in self.all("ENV"):
            if stage is not None and instruction.stage != stage:
                continue
            for key, value in re.findall(r"([A-Za-z_][A-Za-z0-9_]*)=(\S*)", instruction.arguments):
                pairs[key] = value
        return pairs

    def exec_form(self, keyword: str, stage: str) -> list[str]:
        """The JSON array of the last CMD / ENTRYPOINT / HEALTHCHECK CMD of a stage."""
        found = [i for i in self.in_stage(stage) if i.keyword == keyword]
        assert found, f"{self.path.name}: stage {stage} has no {keyword}"
        text = found[-1].arguments
        return json.loads(text[text.index("[") :])


def read_dockerfile(path: Path) -> Dockerfile:
    dockerfile = Dockerfile(path)
    logical, stage = "", None
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue  # comments may sit inside a continued instruction
        if line.endswith("\\"):
            logical += line[:-1] + " "
            continue
        logical += line
        keyword, _, arguments = logical.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            match = re.search(r"\s[Aa][Ss]\s+(\S+)$", arguments)
            stage = match.group(1) if match else None
        dockerfile.instructions.append(Instruction(keyword, arguments.strip(), stage))
        logical = ""
    return dockerfile


def compose_variables(text: str) -> dict[str, set[str]]:
    """Variable name -> the operators it is used with ('' for plain ${NAME})."""
    found: dict[str, set[str]] = {}
    for name, operator, _ in COMPOSE_VARIABLE.findall(text):
        found.setdefault(name, set()).add(operator)
    return found


def env_example_names() -> dict[str, str]:
    """Names .env.example documents (set or commented out) -> the value written there."""
    names: dict[str, str] = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        match = re.match(r"^#?\s*([A-Z][A-Z0-9_]*)=(.*)$", line.strip())
        if match:
            names.setdefault(match.group(1), match.group(2))
    return names


def settings_env_names() -> dict[str, list[str]]:
    """store.settings.Settings field -> the environment variable names it accepts."""
    from store.settings import Settings

    names = {}
    for field_name, info in Settings.model_fields.items():
        alias = info.validation_alias
        choices = list(getattr(alias, "choices", [alias] if isinstance(alias, str) else []))
        upper = [c for c in choices if isinstance(c, str) and c.isupper()]
        names[field_name] = upper or [field_name.upper()]
    return names


def pyproject_pins() -> dict[str, str]:
    """Exact `name==version` pins of the project's dependencies and its extras."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = project.get("optional-dependencies", {}).values()
    pins = {}
    for requirement in project["dependencies"] + [r for extra in extras for r in extra]:
        match = re.match(r"^([A-Za-z0-9_.\-]+)\s*==\s*([^;,\s]+)", requirement)
        if match:
            pins[match.group(1).lower()] = match.group(2)
    return pins
