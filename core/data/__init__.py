"""Dataset registry: built-in sets by name, uploaded files by reference."""

BUILTIN_DATASETS = ("digits", "mnist", "fashion-mnist", "cifar10", "cifar100")
UPLOAD_PREFIX = "upload:"
FILE_SUFFIXES = (".npz", ".zip")


def available_datasets() -> list[str]:
    return list(BUILTIN_DATASETS)


def is_dataset_reference(name: str) -> bool:
    return (
        name in BUILTIN_DATASETS
        or (name.startswith(UPLOAD_PREFIX) and len(name) > len(UPLOAD_PREFIX))
        or name.lower().endswith(FILE_SUFFIXES)
    )
