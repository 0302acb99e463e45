"""Warnings about a finished job's numbers: the cases where a Result would mislead.

A compression "win" means something only if the uncompressed model learned the
task: a model at chance level compresses to rank 1 at no cost in accuracy, and a
list that shows "49x smaller, -0.1 pt" for it is a false win. These checks look at
the finished Result (torch-free: the test labels come in as counts) and return
`ResultWarning`s with the numbers and what to change.

Near chance means: test accuracy at most the chance level plus a margin. The chance
level is the share of the most frequent test class (what always answering that
class scores; 1/K on a balanced set). The margin is the larger of
- 3 standard errors of an accuracy measured on the test split at the chance level,
  sqrt(p (1 - p) / n): a model that guesses lands below it 99.9% of the time, and
- 2 percentage points, so a large test split does not call 12% on ten classes
  "learned".
A model also did not learn when its last training loss is still about ln(K) (the
loss of a uniform guess) or was not finite.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from core.result import RankSearchBlock, Result, ResultWarning
from core.tolerance import within_drop

CHANCE_MARGIN_FLOOR = 0.02
CHANCE_MARGIN_STANDARD_ERRORS = 3.0
# A last training loss at 90% of ln(K) or more: the model is about as unsure as a guess.
UNIFORM_LOSS_SHARE = 0.9
# "Far below": the compressed model lost more than this many points, or more than
# twice the tolerance when that is larger.
FAR_BELOW_FLOOR = 0.05
FAR_BELOW_TOLERANCE_MULTIPLE = 2.0

_TRAIN_LONGER = (
    "train longer (more epochs, train.epochs) or try another learning rate (train.lr): "
    "lower it when the training loss rose or jumped, raise it when the loss barely moved; "
    "check that the labels match the inputs"
)


def chance_accuracy(label_counts: Sequence[int]) -> float:
    """Accuracy of always answering the most frequent class."""
    total = sum(label_counts)
    return max(label_counts) / total if total else 0.0


def chance_margin(chance: float, test_samples: int) -> float:
    if test_samples <= 0:
        return CHANCE_MARGIN_FLOOR
    standard_error = math.sqrt(chance * (1.0 - chance) / test_samples)
    return max(CHANCE_MARGIN_FLOOR, CHANCE_MARGIN_STANDARD_ERRORS * standard_error)


def _points(value: float) -> str:
    return f"{100 * value:.2f}%"


def _did_not_learn(
    block: RankSearchBlock, run: str, num_classes: int, label_counts: Sequence[int]
) -> ResultWarning | None:
    name = "the LoRITa model" if run == "lorita" else "the plain N=1 baseline"
    accuracy = block.accuracy.uncompressed
    chance = chance_accuracy(label_counts) if label_counts else 1.0 / num_classes
    threshold = chance + chance_margin(chance, sum(label_counts))
    if accuracy <= threshold:
        return ResultWarning(
            kind="did_not_learn",
            run=run,
            message=f"{name} did not learn: its test accuracy {_points(accuracy)} is at chance "
            f"level ({_points(chance)} for the most frequent of {num_classes} classes; "
            f"near chance is up to {_points(threshold)}). Its compression numbers say "
            "nothing about the method.",
            advice=_TRAIN_LONGER,
        )
    last = block.history[-1] if block.history else None
    if last is None:
        return None
    uniform_loss = math.log(num_classes)
    if last.train_loss is None or not math.isfinite(last.train_loss):
        return ResultWarning(
            kind="did_not_learn",
            run=run,
            message=f"{name}'s training loss was not finite in its last epoch.",
            advice="lower the learning rate (train.lr)",
        )
    if last.train_loss >= UNIFORM_LOSS_SHARE * uniform_loss:
        return ResultWarning(
            kind="did_not_learn",
            run=run,
            message=f"{name}'s last training loss {last.train_loss:.3f} is about that of a "
            f"uniform guess over {num_classes} classes (ln {num_classes} = "
            f"{uniform_loss:.3f}): it barely learned.",
            advice=_TRAIN_LONGER,
        )
    return None


def _size_knob(compress: dict) -> str | None:
    """The setting that keeps a larger model under the budget and uniform strategies."""
    strategy = compress.get("strategy")
    if strategy == "budget":
        return "keep a larger share (compress.budget)"
    if strategy in ("uniform", "global"):
        return "keep more of the spectrum (compress.keep_fraction)"
    return None


def _strategy_advice(compress: dict) -> str:
    knob = _size_knob(compress)
    if knob is not None:
        return f"{knob} or fine-tune the compressed model (compress.finetune_epochs)"
    # The accuracy strategy met its tolerance on validation; a test drop this far means
    # the two splits disagree.
    return (
        "the validation split chose ranks the test split disagrees with: hold out more "
        "for validation (data.val_fraction) or fine-tune (compress.finetune_epochs)"
    )


def _far_below(block: RankSearchBlock, compress: dict) -> ResultWarning | None:
    tolerance = float(compress.get("max_accuracy_drop") or 0.0)
    drop = block.accuracy.uncompressed - block.accuracy.compressed
    limit = max(FAR_BELOW_FLOOR, FAR_BELOW_TOLERANCE_MULTIPLE * tolerance)
    if drop <= limit:
        return None
    return ResultWarning(
        kind="compressed_far_below",
        run="lorita",
        message=f"the compressed model scores {_points(block.accuracy.compressed)} against "
        f"{_points(block.accuracy.uncompressed)} uncompressed ({-100 * drop:+.2f} points): "
        "the size it reached costs much accuracy.",
        advice=_strategy_advice(compress),
    )


def _baseline_better(result: Result, compress: dict) -> ResultWarning | None:
    tolerance = float(compress.get("max_accuracy_drop") or 0.0)
    base = result.baseline
    if base is None:
        return None
    gap = base.accuracy.uncompressed - result.accuracy.compressed
    if within_drop(gap, tolerance):
        return None
    message = (
        f"the plain N=1 model scores {_points(base.accuracy.uncompressed)} "
        f"uncompressed ({base.params.uncompressed:,} parameters); LoRITa's compressed model "
        f"{_points(result.accuracy.compressed)} ({result.params.compressed:,} parameters): "
        f"{-100 * gap:.2f} points against plain training, more than the allowed "
        f"{100 * tolerance:.2f}."
    )
    # Two different causes with different cures: the N-map model learned less than the
    # plain one before any truncation, or it started level and the chosen ranks cost it.
    start_gap = base.accuracy.uncompressed - result.accuracy.uncompressed
    truncation_loss = result.accuracy.uncompressed - result.accuracy.compressed
    knob = _size_knob(compress) or (
        "let the search give up less accuracy (a smaller compress.max_accuracy_drop)"
    )
    truncation_cure = f"{knob}, or fine-tune the compressed model longer (compress.finetune_epochs)"
    if within_drop(start_gap, tolerance):
        return ResultWarning(
            kind="baseline_better",
            message=f"{message} LoRITa's uncompressed model "
            f"({_points(result.accuracy.uncompressed)}) is within the allowed gap: the "
            "chosen ranks cost the rest.",
            advice=truncation_cure,
        )
    # Both causes at once: say both cures.
    also = (
        f"; the ranks cost another {100 * truncation_loss:.2f} points: {truncation_cure}"
        if not within_drop(truncation_loss, tolerance)
        else ""
    )
    # What leaves the N-map model more rank comes first: on an FCN on Fashion-MNIST a
    # smaller N or a smaller step narrowed the gap, where twice the epochs widened it
    # and AdamW's decay hardly moved it (bench/README.md, "The same job on Fashion-MNIST").
    return ResultWarning(
        kind="baseline_better",
        message=f"{message} The gap is there before truncation: LoRITa's uncompressed model "
        f"scores {_points(result.accuracy.uncompressed)} ({-100 * start_gap:.2f} points).",
        advice="the LoRITa model is the weaker start here: try a smaller N (lorita.factor), "
        "a smaller learning rate (train.lr) or less weight decay (train.weight_decay), "
        f"each of which leaves it more rank, or train it longer (train.epochs){also}",
    )


def result_warnings(result: Result, test_label_counts: Sequence[int] = ()) -> list[ResultWarning]:
    """The warnings of a finished job, most serious first.

    `test_label_counts[k]` is the number of test samples of class k (for the chance level;
    empty: assume balanced classes and no sampling margin beyond the floor).
    """
    spec = result.spec
    compress = spec.get("compress", {})
    num_classes = int(spec.get("model", {}).get("num_classes") or 0)
    if num_classes < 2:
        num_classes = max(2, len(test_label_counts))
    counts = list(test_label_counts)
    warnings: list[ResultWarning] = []
    lorita = _did_not_learn(result, "lorita", num_classes, counts)
    baseline = (
        _did_not_learn(result.baseline, "baseline", num_classes, counts)
        if result.baseline is not None
        else None
    )
    warnings += [w for w in (lorita, baseline) if w is not None]
    if lorita is None:
        far = _far_below(result, compress)
        better = _baseline_better(result, compress)
        warnings += [w for w in (far, better) if w is not None]
    return warnings
