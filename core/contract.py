"""The input contract of an exported model: what raw input it takes, and how it is
turned into the normalised tensors the network was trained on.

Training never sees the user's arrays as they are: images are converted to
(N, C, H, W) float32, divided by `divisor` (255 for uint8 pixels, 16 for the
scikit-learn digits, 1 for float arrays) and normalised per channel with the
training split's `mean` and `std`. The exported models apply exactly these steps
themselves (core.preprocess), so they take the data as it came:

    normalised[:, c] = (to_nchw(x).float() / divisor - mean[c]) / std[c]

One contract per job; it is stored in lowrank.json, in the ONNX model's metadata,
in the safetensors headers, in MODEL_CARD.md and in the Result (`input_contract`).
Its fields and behaviour are defined here; the class itself is
`core.result.InputContract`, a part of the Result like every other (tolerant of
keys added later).

Imports only the standard library and pydantic (the API process reads Results).
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, Field

Layout = Literal["NHW", "NCHW", "NHWC"]

LAYOUT_WORDS = {
    "NHW": "(N, H, W): one channel, no channel axis",
    "NCHW": "(N, C, H, W): channels first",
    "NHWC": "(N, H, W, C): channels last",
}


class InputContractBase(BaseModel):
    """What an exported model expects as input (raw values, the data's own layout)."""

    layout: Layout = Field(description="axis order of a batch of raw inputs")
    shape: list[int] = Field(description="one sample's shape in that layout (no batch axis)")
    dtype: str = Field(description="dtype of the dataset's images as stored (e.g. uint8)")
    value_range: list[float] = Field(
        description="[min, max] of the raw training images; inputs should lie in it"
    )
    divisor: float = Field(description="raw values are divided by it first (255, 16 or 1)")
    mean: list[float] = Field(description="per channel, subtracted after the division")
    std: list[float] = Field(description="per channel, divides after the subtraction")
    class_names: list[str] | None = Field(
        None, description="the name of each output index, when the dataset has names"
    )

    @property
    def channels(self) -> int:
        return len(self.mean)

    def batch_shape(self) -> list[int | str]:
        return ["batch", *self.shape]

    def formula(self) -> str:
        return "(x / divisor - mean[c]) / std[c], per channel c, after reordering to NCHW"

    def summary(self) -> str:
        """One sentence for people (CLI, card)."""
        low, high = self.value_range
        shape = ", ".join(str(v) for v in self.batch_shape())
        return (
            f"raw {self.dtype} images of shape ({shape}), layout {self.layout}, "
            f"values {_number(low)}..{_number(high)}"
        )

    def metadata(self) -> dict[str, str]:
        """String key/values for file headers (ONNX metadata_props, safetensors)."""
        return {
            "input_layout": self.layout,
            "input_shape": json.dumps(self.batch_shape()),
            "input_source_dtype": self.dtype,
            "input_value_range": json.dumps(self.value_range),
            "preprocessing": json.dumps(
                {
                    "divisor": self.divisor,
                    "mean": self.mean,
                    "std": self.std,
                    "formula": self.formula(),
                }
            ),
            "input_contract": self.model_dump_json(),
            **({"class_names": json.dumps(self.class_names)} if self.class_names else {}),
        }

    @classmethod
    def from_metadata(cls, values: dict[str, Any]) -> Any:
        """The contract in file metadata (metadata() of it), or None."""
        text = values.get("input_contract")
        return None if text is None else cls.model_validate_json(text)


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.4g}"
