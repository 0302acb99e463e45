"""run_job end to end on the 8x8 digits, including the method's central claim."""

from __future__ import annotations

import pytest
import torch

from core.errors import Cancelled, SpecError
from core.pipeline import run_job
from core.spec import JobSpec

RESULT_KEYS = {
    "accuracy",
    "params",
    "flops",
    "latency_ms",
    "file_size_bytes",
    "ranks",
    "layers",
    "curve",
    "chosen",
    "val_accuracy",
    "artifacts",
    "spec",
    "device",
    "factor",
    "timings_s",
    "history",
}


def _spec(**overrides) -> JobSpec:
    document = {
        "model": {"arch": "fcn"},
        "data": {"dataset": "digits", "val_fraction": 0.25},
        "lorita": {"factor": 3},
        "train": {"epochs": 15, "weight_decay": 1e-3, "seed": 0},
        # The rank claim is about truncation alone: no fine-tuning after it.
        "compress": {"max_accuracy_drop": 0.01, "finetune_epochs": 0},
        "baseline": True,
    }
    for section, values in overrides.items():
        if isinstance(values, dict):
            document[section] = {**document[section], **values}
        else:
            document[section] = values
    return JobSpec.model_validate(document)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1])
def test_composition_lowers_the_kept_rank_at_equal_tolerance(tmp_path, seed):
    """LoRITa's claim: with the same recipe (weight decay on every factor) and the same
    accuracy tolerance on the validation split, N=3 needs a lower total rank than N=1."""
    events = []
    result = run_job(_spec(train={"seed": seed}), tmp_path, device="cpu", on_event=events.append)
    baseline = result.baseline
    lorita_rank = sum(result.ranks.values())
    plain_rank = sum(baseline.ranks.values())
    # Both models are good, and both stay within the tolerance on validation.
    for block in (result, baseline):
        assert block.val_accuracy.uncompressed > 0.93
        drop = block.val_accuracy.uncompressed - block.val_accuracy.compressed
        assert drop <= 0.01 + 1e-9
    assert lorita_rank < plain_rank, (result.ranks, baseline.ranks)
    assert result.params.compressed < baseline.params.compressed
    # `baseline: true` is the "plain" comparison: the same model, beside LoRITa's.
    assert list(result.comparisons) == ["plain"]
    assert result.comparisons["plain"].params.compressed == baseline.params.compressed
    assert result.verdict.best in {"lorita", "plain"}

    document = result.model_dump(mode="json")
    assert set(document) >= RESULT_KEYS
    assert {"accuracy", "params", "flops", "latency_ms", "ranks", "curve", "chosen"} <= set(
        document["baseline"]
    )
    progress = [e["progress"] for e in events if "progress" in e]
    assert progress == sorted(progress) and progress[-1] == 1.0
    assert {e["run"] for e in events if e["type"] == "epoch"} == {"lorita", "baseline"}
    assert events[-1] == {"type": "result", "result": document}


def test_cancel_stops_the_job(tmp_path):
    with pytest.raises(Cancelled):
        run_job(_spec(baseline=False), tmp_path, device="cpu", should_stop=lambda: True)


def test_interrupted_job_resumes_from_its_checkpoint(tmp_path):
    spec = _spec(baseline=False, train={"epochs": 2}, data={"train_subset": 400})
    checkpoints = tmp_path / "checkpoints"
    calls = {"n": 0}

    def stop_in_second_epoch() -> bool:
        calls["n"] += 1
        return calls["n"] > 3 + 1  # 3 batches per epoch

    with pytest.raises(Cancelled):
        run_job(spec, tmp_path / "a", should_stop=stop_in_second_epoch, checkpoint_dir=checkpoints)
    events = []
    result = run_job(spec, tmp_path / "b", checkpoint_dir=checkpoints, on_event=events.append)
    assert [e["epoch"] for e in events if e["type"] == "epoch"] == [2]
    assert [e.epoch for e in result.history] == [1, 2]


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_request_without_gpu_is_a_spec_error(tmp_path):
    with pytest.raises(SpecError, match="CUDA is not available"):
        run_job(_spec(), tmp_path, device="cuda")


def test_model_fields_that_contradict_the_data_say_what_to_change(tmp_path):
    with pytest.raises(SpecError, match="set it to 1"):
        run_job(_spec(model={"in_channels": 3}), tmp_path, device="cpu")


def test_reported_numbers_match_the_exported_model(tmp_path):
    """The report reuses the rank search's validation numbers and spectra instead of
    recomputing them; both must still describe the model that was exported."""
    from core.data import load_dataset
    from core.export import load_lowrank
    from core.lowrank import weight_matrix
    from core.measure import evaluate

    result = run_job(
        _spec(train={"epochs": 2}, baseline=False, lorita={"factor": 2}), tmp_path, device="cpu"
    )
    model = load_lowrank(tmp_path, preprocess=False)  # the bare network: normalised input
    splits = load_dataset("digits", val_fraction=0.25)
    val_accuracy, _ = evaluate(model, splits.val)
    test_accuracy, _ = evaluate(model, splits.test)
    assert val_accuracy == pytest.approx(result.val_accuracy.compressed, abs=1e-6)
    assert test_accuracy == pytest.approx(result.accuracy.compressed, abs=1e-6)
    for name, layer in result.layers.items():
        spectrum = layer.singular_values
        assert len(spectrum) == layer.full_rank
        assert spectrum == sorted(spectrum, reverse=True)
        if not layer.factorized and layer.rank == layer.full_rank:
            dense = model.get_submodule(name)
            expected = torch.linalg.svdvals(weight_matrix(dense).double())
            assert torch.allclose(
                torch.tensor(spectrum, dtype=torch.float64), expected, rtol=1e-4, atol=1e-5
            )


def test_the_fine_tuning_keeps_the_rate_better_on_validation(tmp_path):
    """Each rate fine-tunes from the same cut; a rate that wrecks the model loses to the
    one before it, and the model exported is that earlier one's, not the last trained."""
    from core.data import load_dataset
    from core.export import load_lowrank
    from core.measure import evaluate

    spec = _spec(
        train={"epochs": 4},
        baseline=False,
        compress={"finetune_epochs": 1, "finetune_lr_scales": [1.0, 100.0]},
    )
    result = run_job(spec, tmp_path, device="cpu")
    trials = result.finetune_lr_trials
    assert [t.lr_scale for t in trials] == [1.0, 100.0]
    assert trials[1].val_accuracy < trials[0].val_accuracy - 0.2
    assert result.finetune_lr_scale == 1.0
    assert result.val_accuracy.compressed == pytest.approx(trials[0].val_accuracy, abs=1e-12)
    model = load_lowrank(tmp_path, preprocess=False)
    splits = load_dataset("digits", val_fraction=0.25)
    kept = trials[0].val_accuracy
    assert evaluate(model, splits.val).accuracy == pytest.approx(kept, abs=1e-6)
    assert evaluate(model, splits.test).accuracy == pytest.approx(
        result.accuracy.compressed, abs=1e-6
    )
    # The history kept is the 1x one's (the other ran a hundred times the rate).
    assert 0 < result.finetune_history[0].lr <= result.recipe.lr
