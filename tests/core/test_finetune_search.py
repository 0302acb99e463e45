"""The accuracy search's tolerance held after fine-tuning (compress.finetune_search):
a CNN trained from scratch whose truncation fine-tuning wins back ends smaller than the
search alone would leave it, still within the tolerance on the validation split; where
fine-tuning cannot carry a smaller model, the job keeps the search's own choice."""

from __future__ import annotations

import pytest

from core.catalog import default_finetune_search
from core.pipeline import run_job
from core.recipes import resolve_spec
from core.spec import JobSpec
from lorita.result_notes import finetune_search_lines

TOLERANCE = 0.04


def _job(arch: str, epochs: int, **compress) -> JobSpec:
    return JobSpec.model_validate(
        {
            "model": {"arch": arch},
            "data": {"dataset": "digits"},
            "lorita": {"factor": 3},
            "train": {"epochs": epochs, "seed": 0},
            "compress": {"max_accuracy_drop": TOLERANCE, **compress},
        }
    )


@pytest.fixture(scope="module")
def cnn_job(tmp_path_factory):
    """ResNet20 on the digits with the family's defaults but a shorter training and a
    wider tolerance (the digits' 144 validation images make half a point one image)."""
    spec = _job("resnet20", 6, target="flops", finetune_epochs=2)
    return run_job(spec, tmp_path_factory.mktemp("cnn"), device="cpu")


def test_a_cnn_ends_smaller_than_the_search_alone_and_within_the_tolerance(cnn_job):
    result = cnn_job
    search = result.rank_search
    assert result.spec["compress"]["finetune_search"] is True  # the resnet family's default
    start, tried = search.before_finetune, search.after_finetune
    assert tried and start is not None
    # Fine-tuning carried a model that truncation alone had put out of tolerance...
    first = tried[0]
    assert first.flops_kept < start.flops_kept
    assert first.val_accuracy_before_finetune < result.val_accuracy.uncompressed - TOLERANCE
    assert first.within_tolerance and first.val_accuracy > first.val_accuracy_before_finetune
    # ...and the job kept the most compressed one within it, stopping at the first outside.
    within = [point.within_tolerance for point in tried]
    assert within == sorted(within, reverse=True) and within.count(False) <= 1
    kept = [point for point in tried if point.within_tolerance][-1]
    assert result.chosen.flops_kept == pytest.approx(kept.flops_kept)
    assert result.flops.compressed / result.flops.uncompressed == pytest.approx(kept.flops_kept)
    assert result.flops.compressed / result.flops.uncompressed < start.flops_kept
    # The exported model is the fine-tuned one that passed.
    assert result.val_accuracy.compressed == pytest.approx(kept.val_accuracy)
    assert result.val_accuracy.compressed >= result.val_accuracy.uncompressed - TOLERANCE
    assert len(result.finetune_history) == 2
    # The walk's first fine-tuning chose the rate, the better of two from the same cut on
    # the validation split; the later ones, the kept one among them, reuse it.
    trials = result.finetune_lr_trials
    assert [t.lr_scale for t in trials] == [0.1, 1.0]
    assert result.finetune_lr_scale == max(trials, key=lambda t: t.val_accuracy).lr_scale


def test_the_report_and_the_card_say_what_was_tried(cnn_job, tmp_path):
    from core.model_card import model_card

    lines = finetune_search_lines(cnn_job)
    assert lines[0].startswith("searched after fine-tuning (the search alone kept ")
    assert len(lines) == len(cnn_job.rank_search.after_finetune) + 2
    assert "(within the tolerance)" in lines[1]
    assert lines[-1] == "  kept the most compressed within the tolerance"
    assert "Its ranks were chosen after fine-tuning" in model_card(cnn_job)


def test_without_a_smaller_model_within_the_tolerance_the_search_choice_stays(tmp_path):
    """The FCN on the digits: truncation past the search's choice costs more than two
    epochs of fine-tuning win back, so the walk stops at its first step."""
    on = run_job(
        _job("fcn", 10, finetune_epochs=2, finetune_search=True), tmp_path / "on", device="cpu"
    )
    off = run_job(_job("fcn", 10, finetune_epochs=2), tmp_path / "off", device="cpu")
    assert off.spec["compress"]["finetune_search"] is False  # the fcn family's default
    assert off.rank_search.after_finetune is None
    tried = on.rank_search.after_finetune
    assert len(tried) == 1 and not tried[0].within_tolerance
    assert on.ranks == off.ranks and on.params == off.params
    assert finetune_search_lines(on)[-1].startswith("  none within the tolerance")


def test_the_default_follows_the_family_and_the_start():
    assert default_finetune_search("resnet20") and default_finetune_search("vgg11")
    assert default_finetune_search("tv:resnet18") and default_finetune_search("timm:resnet10t")
    assert not default_finetune_search("fcn") and not default_finetune_search("simplevit")
    # From the user's weights the fine-tuning recovers the user's model at the search's
    # own choice (bench/README.md, "Warm start"): no walk by default.
    assert not default_finetune_search("resnet20", pretrained=True)

    class Info:
        num_classes, in_channels, image_size = 10, 1, 8

    scratch = resolve_spec(_job("resnet20", 1), Info(), device="cpu")
    assert scratch.compress.finetune_search is True
    asked = resolve_spec(_job("resnet20", 1, finetune_search=False), Info(), device="cpu")
    assert asked.compress.finetune_search is False
