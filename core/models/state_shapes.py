"""The names, shapes and kinds of an architecture's state dict, printed as JSON.

    python -m core.models.state_shapes ARCH NUM_CLASSES IN_CHANNELS IMAGE_SIZE

The API process checks uploaded weights without torch (core.weights reads the
header); what the architecture expects needs torch, so the API asks this small
program, run with the engine's interpreter, and compares the two itself. The
program never sees the uploaded file: it only builds the model (on the meta device,
core.models.weights.expected_state) and prints
{"tensors": {name: {"shape": [...], "float": bool}}}. A build error is printed as
{"error": message} with exit status 2.
"""

from __future__ import annotations

import argparse
import json
import sys

from core.errors import LoritaError


def expected_tensors(
    arch: str, num_classes: int, in_channels: int, image_size: int
) -> dict[str, dict]:
    from core.models.weights import expected_state

    state = expected_state(arch, num_classes, in_channels, image_size)
    return {
        name: {"shape": list(tensor.shape), "float": tensor.dtype.is_floating_point}
        for name, tensor in state.items()
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("arch")
    parser.add_argument("num_classes", type=int)
    parser.add_argument("in_channels", type=int)
    parser.add_argument("image_size", type=int)
    args = parser.parse_args(argv)
    try:
        tensors = expected_tensors(args.arch, args.num_classes, args.in_channels, args.image_size)
    except (LoritaError, ValueError) as error:
        print(json.dumps({"error": str(error)}))
        return 2
    print(json.dumps({"tensors": tensors}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
