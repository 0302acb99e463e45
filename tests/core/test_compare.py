"""The job's comparisons (core.peers.compare): a real tiny job with all three, the
verdict rule, the spec's `baseline` alias and the CLI's table."""

from __future__ import annotations

import argparse
import json

import pytest
from torch import nn

from core.job.stages import FINETUNE_LR_SCALE
from core.peers import PruningError, prune_to_budget
from core.peers.compare import peer_finetune_epochs
from core.peers.verdict import decide
from core.pipeline import run_job
from core.result import Result
from core.spec import CompressSpec, JobSpec
from lorita.comparison_table import format_comparisons
from lorita.compress_command import _comparison_list

EPOCHS = 3
ALL = ["plain", "plain+finetune", "pruning"]


def _spec(**top) -> JobSpec:
    return JobSpec.model_validate(
        {
            "model": {"arch": "fcn"},
            "data": {"dataset": "digits", "val_fraction": 0.25},
            "train": {"epochs": EPOCHS, "seed": 0},
            "compress": {"max_accuracy_drop": 0.01},
            **top,
        }
    )


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    events: list[dict] = []
    out = tmp_path_factory.mktemp("compare")
    result = run_job(_spec(comparisons=ALL), out, device="cpu", on_event=events.append)
    return result, events, out


def _share(result: Result) -> float:
    return result.params.compressed / result.params.uncompressed


def test_all_three_comparisons_at_lorita_size(compared):
    result, _, _ = compared
    assert list(result.comparisons) == ALL
    lorita = _share(result)
    for method in ("plain+finetune", "pruning"):
        block = result.comparisons[method]
        assert block.sized_to == "params"
        assert block.params_kept == pytest.approx(lorita, rel=0.03), method
        assert block.params.compressed < block.params.uncompressed
        # The peers get the fine-tuning LoRITa's model got (the FCN default: 3 epochs).
        epochs = result.spec["compress"]["finetune_epochs"]
        assert epochs == 3 and block.finetune_epochs == epochs and not block.note
        kept = f"{method} at {block.finetune_lr_scale:g}x lr"
        assert [e.run for e in block.finetune_history] == [kept] * epochs
    # plain is sized by the tolerance, as LoRITa's own model, and keeps its curve.
    plain = result.comparisons["plain"]
    assert plain.sized_to is None and plain.curve
    assert plain.accuracy.compressed == result.baseline.accuracy.compressed
    assert plain.params.compressed == result.baseline.params.compressed
    # ... and it is compressed as LoRITa's is, fine-tuning included: its block says so.
    assert len(plain.finetune_history) == plain.finetune_epochs == 3
    assert "then fine-tuned for 3 epochs" in plain.description
    assert [t.lr_scale for t in plain.finetune_lr_trials] == [FINETUNE_LR_SCALE, 1.0]
    assert plain.finetune_lr_scale == result.baseline.finetune_lr_scale
    # Every comparison starts from the same N=1 model.
    assert len({b.accuracy.uncompressed for b in result.comparisons.values()}) == 1
    assert result.comparisons["pruning"].pruning["achieved"] == pytest.approx(lorita, rel=0.01)
    # Each peer's fine-tuning, said in its description: the truncated N=1 model distils
    # from the N=1 model (compress.distill is on), the pruned one learns the labels.
    assert result.spec["compress"]["distill"] is True
    assert "distilled from the N=1 model" in result.comparisons["plain+finetune"].description
    assert "on the labels" in result.comparisons["pruning"].description
    # Each fine-tuned peer tried LoRITa's reduced rate and the training's own from the
    # same start and kept the one better on the validation split; its history is that
    # rate's (with one schedule over the same epochs, every epoch's rate scales with it).
    lorita_lr = [e.lr / result.finetune_lr_scale for e in result.finetune_history]
    for method in ("plain+finetune", "pruning"):
        block = result.comparisons[method]
        trials = block.finetune_lr_trials
        assert [t.lr_scale for t in trials] == [FINETUNE_LR_SCALE, 1.0], method
        best = max(trials, key=lambda t: t.val_accuracy)
        assert block.finetune_lr_scale == best.lr_scale, method
        assert "the better of 0.1x and 1x on the validation split" in block.description
        assert f"at {best.lr_scale:g}x the training's learning rate" in block.description
        tuned_lr = [e.lr for e in block.finetune_history]
        assert tuned_lr == pytest.approx([lr * best.lr_scale for lr in lorita_lr]), method
    assert max(lorita_lr) > 0


def test_lorita_fine_tuning_keeps_the_better_rate_on_validation(compared):
    """LoRITa's own fine-tuning tries the same two rates from the same cut as the peers
    and keeps the one better on the validation split: the exported model is that one."""
    result, _, _ = compared
    trials = result.finetune_lr_trials
    assert [t.lr_scale for t in trials] == [FINETUNE_LR_SCALE, 1.0]
    best = max(trials, key=lambda t: t.val_accuracy)  # the first of equals, as the job
    assert result.finetune_lr_scale == best.lr_scale
    assert result.val_accuracy.compressed == pytest.approx(best.val_accuracy, abs=1e-12)
    # The history is the kept rate's: the same schedule as the peers', scaled.
    peer = result.comparisons["plain+finetune"]
    ratio = result.finetune_lr_scale / peer.finetune_lr_scale
    assert [e.lr for e in result.finetune_history] == pytest.approx(
        [e.lr * ratio for e in peer.finetune_history]
    )
    # The model card says which rate, and of which.
    from core.model_card import model_card

    assert (
        f"at {result.finetune_lr_scale:g}x the training's learning rate (the better on the "
        "validation split of 0.1x and 1x)"
    ) in model_card(result)


def test_latency_at_batch_1_and_64_for_every_model(compared):
    result, _, _ = compared
    for block in [result, *result.comparisons.values()]:
        latency = block.latency_cpu
        for pair in (latency.batch_1, latency.batch_64):
            assert pair.uncompressed > 0 and pair.compressed > 0
        assert latency.batch_64.uncompressed > latency.batch_1.uncompressed
    for block in result.comparisons.values():
        assert block.latency_ms == block.latency_cpu.batch_1


def test_the_plain_model_is_trained_once_and_compare_stages_progress(compared):
    result, events, _ = compared
    epochs = [e for e in events if e["type"] == "epoch"]
    assert sum(e["run"] == "baseline" for e in epochs) == EPOCHS
    assert sum(e["run"] == "lorita" for e in epochs) == EPOCHS
    stages = [e for e in events if e["type"] == "stage" and e["stage"] == "compare"]
    assert len(stages) >= 3
    values = [e["progress"] for e in events if "progress" in e]
    assert values == sorted(values) and values[-1] == 1.0
    assert result.timings_s.model_dump()["compare"] > 0


def test_verdict_and_json(compared):
    result, events, out = compared
    verdict = result.verdict
    assert verdict.best in {"lorita", *ALL}
    assert [s.method for s in verdict.standings] == ["lorita", *ALL]
    assert verdict.reference_accuracy == result.comparisons["plain"].accuracy.uncompressed
    assert " is best: " in verdict.sentence or verdict.sentence.startswith("no method")
    document = json.loads((out / "report.json").read_text())
    assert Result.model_validate(document).model_dump(mode="json") == document
    assert events[-1]["result"] == document
    assert document["spec"]["comparisons"] == ALL and document["spec"]["baseline"] is True


def test_cli_table_shows_every_method_and_the_verdict(compared):
    result, _, _ = compared
    text = format_comparisons(result)
    lines = text.splitlines()
    # Every model here was fine-tuned for 3 epochs after it was cut, and every row says
    # so, the plain model cut by its own search too.
    for label in (
        "plain N=1, uncompressed",
        "LoRITa N=3 + fine-tune (3 ep)",
        "plain N=1, truncated (own search) + fine-tune (3 ep)",
        "plain N=1, truncated (LoRITa's size) + fine-tune (3 ep)",
        "Torch-Pruning (LoRITa's size) + fine-tune (3 ep)",
    ):
        assert any(line.strip().startswith(label) for line in lines), label
    assert lines[-1] == f"verdict: {result.verdict.sentence}"
    assert (
        "LoRITa + fine-tune" in lines[-1]
        and "Torch-Pruning (LoRITa's size) + fine-tune" in lines[-1]
    )
    # No note: the peers got LoRITa's own fine-tuning (a note appears only when they
    # are given an epoch LoRITa's model did not get, and then only once).
    assert sum("note (" in line for line in lines) == 0
    # The rate each fine-tuning kept, LoRITa's first, of the two each tried.
    blocks = result.comparisons
    assert lines[-2] == (
        "  fine-tuning rate (x the training's; the better on the validation split of 0.1x "
        f"and 1x): LoRITa {result.finetune_lr_scale:g}x, "
        f"plain {blocks['plain'].finetune_lr_scale:g}x, "
        f"plain+finetune {blocks['plain+finetune'].finetune_lr_scale:g}x, "
        f"pruning {blocks['pruning'].finetune_lr_scale:g}x"
    )


@pytest.mark.slow
def test_pruning_alone_trains_n1_without_its_rank_search(tmp_path):
    events: list[dict] = []
    result = run_job(_spec(comparisons=["pruning"]), tmp_path, device="cpu", on_event=events.append)
    assert result.baseline is None and list(result.comparisons) == ["pruning"]
    assert sum(e["type"] == "epoch" and e["run"] == "baseline" for e in events) == EPOCHS
    assert not any("baseline:" in e.get("message", "") for e in events if e["type"] == "stage")
    assert [s.method for s in result.verdict.standings] == ["lorita", "pruning"]


# ------------------------------------------------------------------ no training needed


def test_baseline_true_is_the_plain_comparison():
    assert _spec(baseline=True).comparisons == ["plain"]
    spec = _spec(comparisons=["pruning", "plain", "pruning"])
    assert spec.comparisons == ["plain", "pruning"] and spec.baseline is True
    assert _spec(comparisons=["pruning"]).baseline is False
    assert _spec().comparisons == [] and _spec().baseline is False
    with pytest.raises(ValueError):
        _spec(comparisons=["quantize"])


def test_verdict_prefers_the_smallest_within_tolerance():
    entries = [
        {"method": "lorita", "accuracy": 0.979, "kept": 0.059},
        {"method": "plain", "accuracy": 0.981, "kept": 0.31},
        {"method": "pruning", "accuracy": 0.983, "kept": 0.058, "finetune_epochs": 3},
    ]
    verdict = decide(entries, reference_accuracy=0.986, tolerance=0.005, target="params")
    # lorita is out of tolerance (0.7 pts); pruning is within it and smallest.
    assert verdict.best == "pruning" and verdict.criterion == "smallest_within_tolerance"
    assert [s.within_tolerance for s in verdict.standings] == [False, True, True]
    assert verdict.sentence.startswith("Torch-Pruning (LoRITa's size) + fine-tune is best: 98.30%")
    # A method that was not fine-tuned is named without it.
    assert "; plain N=1, truncated (own search) 98.10% at 31.0%" in verdict.sentence


def test_verdict_breaks_equal_sizes_by_accuracy():
    entries = [
        {"method": "lorita", "accuracy": 0.984, "kept": 0.060},
        {"method": "pruning", "accuracy": 0.982, "kept": 0.059},  # "the same size"
        {"method": "plain", "accuracy": 0.985, "kept": 0.30},
    ]
    verdict = decide(entries, reference_accuracy=0.986, tolerance=0.005, target="params")
    assert verdict.best == "lorita"


def test_verdict_when_nothing_is_within_tolerance():
    entries = [
        {"method": "lorita", "accuracy": 0.90, "kept": 0.05},
        {"method": "pruning", "accuracy": 0.92, "kept": 0.05},
    ]
    verdict = decide(entries, reference_accuracy=0.98, tolerance=0.005, target="flops")
    assert verdict.best == "pruning" and verdict.criterion == "most_accurate"
    assert verdict.sentence.startswith("no method stays within 0.50 pts")
    assert "FLOPs" in verdict.sentence


def test_peer_finetune_epochs_follow_lorita_or_default_to_one():
    assert peer_finetune_epochs(CompressSpec(finetune_epochs=4)) == (4, None)
    epochs, note = peer_finetune_epochs(CompressSpec(finetune_epochs=0))
    assert epochs == 1 and "finetune_epochs is 0" in note


def test_pruning_to_an_unreachable_share_can_return_the_closest():
    model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    with pytest.raises(PruningError):
        prune_to_budget(model, (64,), keep=0.01)
    closest = prune_to_budget(model, (64,), keep=0.01, closest=True)
    assert 0.01 < closest.achieved < 0.2
    assert closest.widths["0"] == 1  # as narrow as it goes


def test_cli_compare_flag():
    assert _comparison_list("all") == ALL
    assert _comparison_list("pruning, plain") == ["pruning", "plain"]
    with pytest.raises(argparse.ArgumentTypeError, match="choose from"):
        _comparison_list("plain,prune")
