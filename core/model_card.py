"""MODEL_CARD.md: the artifact folder explained to the person who downloads it.

What each file is, what input the models take (the input contract), the accuracies
the job measured, and how to load and run the model with PyTorch and onnxruntime.
Written from the Result, after report.json, so the two always agree.
"""

from __future__ import annotations

from pathlib import Path

from core.atomic import write_text_atomic
from core.contract import LAYOUT_WORDS
from core.export import (
    DENSE_FILE,
    LOWRANK_FILE,
    LOWRANK_META,
    MODEL_CARD_FILE,
    ONNX_FILE,
    REPORT_FILE,
)
from core.int8_card import INT8_FILE_NOTE, int8_card_lines
from core.onnx_export import ONNX_INPUT
from core.quantize import INT8_FILE
from core.recipes import epochs_text
from core.result import InputContract, Result

FILES = {
    LOWRANK_FILE: "the compressed model: layers whose rank pays off are two thin layers "
    "(safetensors weights; load with `lorita.load_lowrank(folder)`)",
    LOWRANK_META: "what rebuilds the compressed model: architecture, ranks, the input "
    "contract (read by `load_lowrank` / `load_dense`)",
    DENSE_FILE: "the same compressed weights in the original architecture's structure "
    "and key names (`lorita.load_dense(folder)`, or `load_state_dict` into a plain model)",
    ONNX_FILE: "the compressed model for onnxruntime and other runtimes, preprocessing "
    "included; its metadata_props describe the input",
    INT8_FILE: INT8_FILE_NOTE,
    REPORT_FILE: "the job's full result (spec, accuracies, sizes, ranks, training history)",
    MODEL_CARD_FILE: "this file",
}


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.2f}%"


def _files_section(result: Result) -> list[str]:
    lines = ["## Files", "", "| file | what it is |", "|---|---|"]
    for name in result.artifacts:
        lines.append(f"| `{name}` | {FILES.get(name, '')} |")
    return lines


def _accuracy_section(result: Result) -> list[str]:
    test, val = result.accuracy, result.val_accuracy
    lines = [
        "## Accuracy",
        "",
        "| | uncompressed | compressed |",
        "|---|---|---|",
        f"| test split | {_percent(test.uncompressed)} | {_percent(test.compressed)} |",
        f"| validation split | {_percent(val.uncompressed)} | {_percent(val.compressed)} |",
        "",
        f"Parameters: {result.params.uncompressed:,} → {result.params.compressed:,}. "
        "The exported models are the compressed one; given the raw test images they "
        "reproduce the test accuracy above.",
    ]
    lines += ["", _finetune_words(result)]
    if result.baseline is not None:
        lines += [
            "",
            f"Plain training (N=1) reached {_percent(result.baseline.accuracy.uncompressed)} "
            f"on the test split ({_percent(result.baseline.accuracy.compressed)} compressed "
            "the same way).",
        ]
    return lines


def _rate_words(result: Result) -> str:
    """The fine-tuning's learning rate, and of which it was the validation's pick."""
    if result.finetune_lr_scale is None:
        return ""
    words = f", at {result.finetune_lr_scale:g}x the training's learning rate"
    tried = [trial.lr_scale for trial in result.finetune_lr_trials or ()]
    if len(tried) > 1:
        rates = " and ".join(f"{scale:g}x" for scale in tried)
        words += f" (the better on the validation split of {rates})"
    return words


def _finetune_words(result: Result) -> str:
    """How the compressed model was fine-tuned after truncation (the report's recipe)."""
    recipe = result.recipe
    if recipe is None or not recipe.finetune_epochs:
        return "The compressed model was not fine-tuned after truncation."
    how = (
        f"distilled from {recipe.distilled_from} (its outputs as well as the labels)"
        if recipe.distilled_from
        else "on the labels alone"
    )
    words = (
        "After truncation the compressed model was fine-tuned for "
        f"{epochs_text(recipe.finetune_epochs)}, {how}{_rate_words(result)}."
    )
    tried = result.rank_search.after_finetune if result.rank_search else None
    if tried:
        kept = any(point.within_tolerance for point in tried)
        words += (
            f" Its ranks were chosen after fine-tuning: {len(tried)} smaller "
            f"allocation{'s were' if len(tried) != 1 else ' was'} fine-tuned and checked on "
            "the validation split; "
            + (
                "the most compressed within the accuracy tolerance was kept."
                if kept
                else "none stayed within the accuracy tolerance, so the search's own "
                "choice was kept."
            )
        )
    return words


def _input_section(contract: InputContract | None) -> list[str]:
    if contract is None:
        return [
            "## Input",
            "",
            "These models take normalised (N, C, H, W) float32 tensors, as in training.",
        ]
    shape = ", ".join(str(v) for v in contract.batch_shape())
    low, high = contract.value_range
    lines = [
        "## Input",
        "",
        "The models take the images **as the dataset stores them** and normalise them "
        "themselves; do not scale or normalise them yourself.",
        "",
        f"- shape: `({shape})`, layout {contract.layout} — {LAYOUT_WORDS[contract.layout]}",
        f"- values: the dataset's own, {low:g} to {high:g} in the training data "
        f"(stored as {contract.dtype})",
        "- dtype: PyTorch models accept any numeric tensor or numpy array (uint8 too); "
        f"`{ONNX_FILE}` takes float32 only — cast with `.astype(numpy.float32)` "
        "(uint8 input is refused by onnxruntime)",
        f"- inside the model: `{contract.formula()}` with divisor {contract.divisor:g}, "
        f"mean {_numbers(contract.mean)}, std {_numbers(contract.std)}",
        "- output: logits, one row per image; the class is the argmax",
    ]
    if contract.layout == "NHW":
        lines.append("- PyTorch models also accept `(batch, 1, H, W)`")
    if contract.class_names:
        names = ", ".join(f"{i}: {name}" for i, name in enumerate(contract.class_names))
        lines.append(f"- classes: {names}")
    return lines


def _numbers(values: list[float]) -> str:
    return "[" + ", ".join(f"{v:.6g}" for v in values) + "]"


def _usage_section(contract: InputContract | None) -> list[str]:
    shape = contract.batch_shape() if contract is not None else ["batch", "C", "H", "W"]
    shape_text = ", ".join(str(v) for v in shape)
    return [
        "## Load and predict",
        "",
        "PyTorch (`pip install` this project; run in the folder of these files):",
        "",
        "```python",
        "import torch",
        "import lorita",
        "",
        'model = lorita.load_lowrank(".")  # preprocessing included',
        f"images = ...  # numpy array or tensor of shape ({shape_text}), raw values",
        "with torch.no_grad():",
        "    predicted = model(torch.as_tensor(images)).argmax(dim=1)",
        "```",
        "",
        "onnxruntime (no PyTorch needed):",
        "",
        "```python",
        "import numpy as np",
        "import onnxruntime as ort",
        "",
        f'session = ort.InferenceSession("{ONNX_FILE}")',
        f"images = ...  # numpy array of shape ({shape_text}), raw values",
        f'(logits,) = session.run(None, {{"{ONNX_INPUT}": images.astype(np.float32)}})',
        "predicted = logits.argmax(axis=1)",
        "```",
    ]


def model_card(result: Result) -> str:
    spec = result.spec
    arch = spec.get("model", {}).get("arch", "?")
    dataset = spec.get("data", {}).get("dataset", "?")
    lines = [
        f"# {arch} on {dataset}, compressed with LoRITa (N={result.factor})",
        "",
        *_files_section(result),
        "",
        *_input_section(result.input_contract),
        "",
        *_accuracy_section(result),
        "",
        *int8_card_lines(result),
        *_usage_section(result.input_contract),
        "",
    ]
    return "\n".join(lines)


def write_model_card(out_dir: Path, result: Result) -> int:
    """Write MODEL_CARD.md into `out_dir`; returns its size in bytes."""
    path = Path(out_dir) / MODEL_CARD_FILE
    write_text_atomic(path, model_card(result))
    return path.stat().st_size
