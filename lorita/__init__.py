"""LoRITa: compress neural networks by training with composed linear layers.

    import lorita
    model = lorita.factorize(model, factor=3)       # train this with weight decay
    model = lorita.factorize(trained, 3, init="pretrained")  # or start at your weights
    dense = lorita.merge(model)                       # original structure again
    small = lorita.to_lowrank(dense, {"layers.0": 20})
    result = lorita.run_job(lorita.JobSpec(...), "out/")   # the whole pipeline
    model = lorita.load_lowrank("out/")               # reload a compressed model; it
    predicted = model(raw_images).argmax(1)           # takes the data as it came

Names are imported on first use, so `import lorita` stays fast (no torch import).
"""

from __future__ import annotations

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from typing import Any

# The one version string is pyproject.toml's; the CLI and the API read it from here.
try:
    __version__ = version("lorita-service")
except PackageNotFoundError:  # a source tree used without installing it
    __version__ = "0+unknown"

# public name -> module that defines it
_EXPORTS = {
    "factorize": "core.factorize",
    "merge": "core.factorize",
    "eligible_layers": "core.factorize",
    "truncate": "core.lowrank",
    "to_lowrank": "core.lowrank",
    "singular_values": "core.lowrank",
    "load_lowrank": "core.export",
    "load_dense": "core.export",
    "read_input_contract": "core.export",
    "choose_ranks": "core.ranks",
    "run_job": "core.pipeline",
    "train_model": "core.train",
    "JobSpec": "core.spec",
    "build_model": "core.models",
    "load_dataset": "core.data",
    "count_params": "core.measure",
    "count_flops": "core.measure",
    "LoritaError": "core.errors",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'lorita' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value  # cache: later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
