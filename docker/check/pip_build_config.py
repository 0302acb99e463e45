"""Hand this machine's pip settings to an image build, without baking them in.

Some machines reach the package index only through their own pip settings: a
private index or mirror, local wheel folders, the CA bundle of a proxy. The
Dockerfiles know none of that (they must build anywhere), so the compose check
passes it in at build time only. This script writes a pip.conf holding the
settings `pip config list` reports here (configuration files and PIP_*
variables alike), with every local file or folder they name moved under
BUILD_ROOT, and prints the `podman build` arguments that mount those files and
folders there read-only, and the pip.conf where pip inside the image reads it.
Only RUN steps see them; no image layer keeps them.

    pip_build_config.py OUTPUT_PIP_CONF      # prints one --volume=... per line
"""

from __future__ import annotations

import configparser
import os
import subprocess
import sys
from pathlib import Path

# Where pip looks for its global configuration inside a Debian/Python image.
IMAGE_PIP_CONF = "/etc/pip.conf"
# Where the local files the settings name are mounted during a build.
BUILD_ROOT = "/run/pip-build"


def pip_settings(python: str) -> dict[tuple[str, str], str]:
    """(section, key) -> value, as this machine's pip sees them; PIP_* variables win."""
    listing = subprocess.run(
        [python, "-m", "pip", "config", "list"], capture_output=True, text=True, check=True
    ).stdout
    from_files, from_env = {}, {}
    for line in listing.splitlines():
        name, sep, value = line.partition("=")
        if not sep:
            continue
        section, _, key = name.rpartition(".")
        value = value.strip().strip("'\"")
        if section == ":env:":
            from_env[("global", key)] = value
        else:
            from_files[(section, key)] = value
    return {**from_files, **from_env}


class Mounts:
    """Local paths to mount, each under its own folder of BUILD_ROOT."""

    def __init__(self) -> None:
        self.targets: dict[Path, str] = {}

    def target(self, path: Path) -> str:
        if path not in self.targets:
            self.targets[path] = f"{BUILD_ROOT}/{len(self.targets)}/{path.name}"
        return self.targets[path]

    def rewrite(self, key: str, value: str) -> str:
        """The value with each existing local path replaced by its path in the build.

        A local index (file:///.../simple) links to its files by relative paths,
        usually into a folder beside it: its parent folder is mounted.
        """
        tokens = []
        for token in value.split():
            scheme = "file://" if token.startswith("file://") else ""
            path = token[len(scheme) :]
            if path.startswith("/") and os.path.exists(path):
                local = Path(path)
                if key.endswith("index-url"):
                    token = f"{scheme}{self.target(local.parent)}/{local.name}"
                else:
                    token = f"{scheme}{self.target(local)}"
            tokens.append(token)
        return " ".join(tokens)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    output = Path(argv[0]).resolve()
    config = configparser.ConfigParser(interpolation=None)
    mounts = Mounts()
    settings = pip_settings(os.environ.get("PYTHON", "python3"))
    for (section, key), value in sorted(settings.items()):
        if not config.has_section(section):
            config.add_section(section)
        config.set(section, key, mounts.rewrite(key, value))
    with output.open("w") as file:
        config.write(file)
    for local, target in mounts.targets.items():
        print(f"--volume={local}:{target}:ro")
    print(f"--volume={output}:{IMAGE_PIP_CONF}:ro")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
