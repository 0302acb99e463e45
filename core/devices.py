"""Which device a run uses, and whether an error means it ran out of memory.

One rule set for the CLI, the pipeline, the recipes and the worker. torch is
imported inside the functions, so a process that only validates settings (the
API) can import this module without loading torch.
"""

from __future__ import annotations

from core.errors import SpecError

AUTO = "auto"
DEVICE_HELP = "auto (CUDA when present), cpu, cuda or cuda:N"

# Messages of allocators that ran out: CUDA, and the CPU allocator of PyTorch.
_OUT_OF_MEMORY_TEXTS = ("out of memory", "can't allocate memory")


def resolve_device(setting: str | None = None) -> str:
    """'auto' or None -> 'cuda' when a GPU is usable, else 'cpu'; 'cpu', 'cuda' and
    'cuda:N' are checked against this machine. Raises SpecError saying what to use."""
    import torch

    if setting is None or setting == AUTO:
        return "cuda" if torch.cuda.is_available() else "cpu"
    if setting == "cpu":
        return setting
    if setting == "cuda" or setting.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise SpecError(
                f"device {setting!r} was requested but CUDA is not available here; "
                "use device 'cpu' or run on a machine with an NVIDIA GPU"
            )
        index = setting.partition(":")[2]
        if index and (not index.isdigit() or int(index) >= torch.cuda.device_count()):
            raise SpecError(
                f"device {setting!r} does not exist here: this machine has "
                f"{torch.cuda.device_count()} GPU(s), cuda:0 to "
                f"cuda:{torch.cuda.device_count() - 1}"
            )
        return setting
    raise SpecError(f"unknown device {setting!r}; use {DEVICE_HELP}")


def is_out_of_memory(error: BaseException) -> bool:
    """True for host or GPU memory exhaustion, however PyTorch reported it."""
    if isinstance(error, MemoryError):
        return True
    import torch

    if isinstance(error, torch.OutOfMemoryError):
        return True
    text = str(error).lower()
    return isinstance(error, RuntimeError) and any(t in text for t in _OUT_OF_MEMORY_TEXTS)
