"""Model zoo: build a classification model by name.

Filled in by the zoo modules; the names below are the contract the job spec
validates against.
"""

ZOO_ARCHS = (
    "fcn",
    "vgg11",
    "vgg13",
    "vgg16",
    "vgg19",
    "resnet20",
    "resnet56",
    "simplevit",
)
TORCHVISION_PREFIX = "tv:"


def available_archs() -> list[str]:
    return list(ZOO_ARCHS)


def is_known_arch(name: str) -> bool:
    if name in ZOO_ARCHS:
        return True
    if name.startswith(TORCHVISION_PREFIX):
        from torchvision import models

        return name[len(TORCHVISION_PREFIX) :] in models.list_models(module=models)
    return False
