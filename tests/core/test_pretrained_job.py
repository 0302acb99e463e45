"""A job that starts from the user's trained model (model.weights): the report's
reference numbers are the uploaded model's own, the warm start is that same model,
and the plain SVD truncation is measured at LoRITa's budget."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from core.catalog import BUILTINS
from core.errors import SpecError
from core.factorize import factorize
from core.measure import count_params, evaluate
from core.models import build_model
from core.pipeline import run_job
from core.spec import JobSpec
from core.train import train_model
from core.weights import WeightsError
from lorita.comparison_table import format_comparisons
from lorita.result_notes import baseline_lines
from tests.core.train_recipe import plain_recipe

DIGITS = BUILTINS["digits"]


@pytest.fixture(scope="module")
def trained_fcn(digits, tmp_path_factory):
    """An FCN trained briefly on the 8x8 digits, saved as the user would save it."""
    torch.manual_seed(0)
    model = build_model("fcn", DIGITS.num_classes, DIGITS.in_channels, DIGITS.image_size)
    train_model(model, digits, plain_recipe(weight_decay=0.0, schedule="constant"), device="cpu")
    path = tmp_path_factory.mktemp("weights") / "fcn.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return model.eval(), path


def _spec(weights, **compress):
    return JobSpec.model_validate(
        {
            "model": {"arch": "fcn", "weights": str(weights)},
            "data": {"dataset": "digits"},
            "lorita": {"factor": 2},
            "train": {"epochs": 1},
            "compress": {"strategy": "uniform", "keep_fraction": 0.3, **compress},
        }
    )


def test_a_job_from_weights_reports_the_uploaded_model(trained_fcn, digits, tmp_path):
    model, path = trained_fcn
    fresh = evaluate(model, digits.test, "cpu").accuracy
    assert fresh > 0.8  # the fixture learned something, so equality below means something

    result = run_job(_spec(path), tmp_path, device="cpu")

    pretrained = result.pretrained
    assert pretrained is not None and pretrained.weights == str(path)
    assert pretrained.accuracy == pytest.approx(fresh, abs=1e-12)
    # The balanced split is the same function: the same predictions, the same accuracy.
    assert pretrained.warm_start_accuracy == pytest.approx(fresh, abs=1e-12)
    assert pretrained.params == count_params(model) == result.params.uncompressed
    # The plain truncation is measured at LoRITa's budget, on the uploaded model.
    plain = pretrained.plain_truncation
    assert plain.params_kept == pytest.approx(result.chosen.params_kept, abs=0.02)
    assert plain.params < pretrained.params and 0.0 <= plain.accuracy <= 1.0
    assert set(plain.ranks) == set(result.ranks)
    # The warm start fine-tunes with the "from pretrained" recipe, and says so.
    assert result.recipe.name == "from pretrained"
    assert (result.recipe.optimizer, result.recipe.weight_decay) == ("adamw", 1.0)
    # ... and its family's fine-tuning after truncation for a warm start (one epoch).
    assert result.spec["compress"]["finetune_epochs"] == 1
    assert (result.recipe.finetune_epochs, result.recipe.distilled_from) == (1, "your model")
    card = (tmp_path / "MODEL_CARD.md").read_text()
    assert "fine-tuned for 1 epoch, distilled from your model" in card
    assert result.spec["model"]["weights"] == str(path)
    dumped = result.model_dump(mode="json")
    assert dumped["pretrained"]["plain_truncation"]["accuracy"] == plain.accuracy


def test_with_weights_the_comparisons_say_their_n1_model_is_yours(trained_fcn, tmp_path):
    """The N=1 model the comparisons start from is the user's model trained by the same
    recipe, not a fresh one: the table and the baseline line say so."""
    _, path = trained_fcn
    spec = _spec(path).model_copy(update={"comparisons": ["plain"], "baseline": True})
    result = run_job(spec, tmp_path, device="cpu")
    table = format_comparisons(result).splitlines()
    assert table[2].strip().startswith("plain N=1 from your model, uncompressed")
    assert baseline_lines(result)[0].startswith(
        "baseline (plain N=1 model, from your model trained with the same recipe): "
    )


def test_the_warm_start_reproduces_the_uploaded_model(trained_fcn, digits):
    model, _ = trained_fcn
    warm = factorize(model, 3, init="pretrained").eval()
    x = torch.stack([digits.test[i][0] for i in range(64)])
    with torch.no_grad():
        assert torch.allclose(warm(x), model(x), atol=1e-4)
    assert (
        evaluate(warm, digits.test, "cpu").accuracy == evaluate(model, digits.test, "cpu").accuracy
    )


def test_a_job_without_weights_records_the_scratch_recipe(tmp_path):
    spec = JobSpec.model_validate(
        {
            "model": {"arch": "fcn"},
            "data": {"dataset": "digits", "train_subset": 200},
            "train": {"epochs": 1},
            "compress": {"strategy": "uniform", "keep_fraction": 0.5},
        }
    )
    result = run_job(spec, tmp_path, device="cpu")
    assert result.pretrained is None and "pretrained" not in result.model_dump(mode="json")
    assert result.recipe.name == "from scratch" and result.recipe.optimizer == "adamw"


def test_weights_of_another_architecture_fail_before_training(trained_fcn, tmp_path):
    _, path = trained_fcn
    spec = _spec(path).model_copy(deep=True)
    spec.model.arch = "simplevit"
    with pytest.raises(WeightsError, match="do not fit simplevit: missing"):
        run_job(spec, tmp_path, device="cpu")


def test_an_upload_reference_needs_the_service(tmp_path):
    with pytest.raises(SpecError, match="uploaded to the service"):
        run_job(_spec("upload:0b5e6f2a-0000-4000-8000-000000000000"), tmp_path, device="cpu")


def test_the_spec_takes_only_uploads_or_safetensors_files():
    with pytest.raises(ValueError, match="upload:ID"):
        _spec("weights.pt")


def test_a_timm_job_from_weights_succeeds(tmp_path):
    """timm:resnet10t on the 8x8 digits, from its (untrained) weights: built, loaded
    strictly, warm-started, fine-tuned, truncated and exported like any other arch."""
    torch.manual_seed(0)
    model = build_model("timm:resnet10t", DIGITS.num_classes, 1, DIGITS.image_size)
    path = tmp_path / "resnet10t.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    spec = JobSpec.model_validate(
        {
            "model": {"arch": "timm:resnet10t", "weights": str(path)},
            "data": {"dataset": "digits", "train_subset": 200},
            "lorita": {"factor": 2},
            "train": {"epochs": 1, "batch_size": 50},
            "compress": {"strategy": "uniform", "keep_fraction": 0.5},
        }
    )
    result = run_job(spec, tmp_path / "out", device="cpu")
    assert result.pretrained.warm_start_accuracy == pytest.approx(result.pretrained.accuracy)
    assert result.params.compressed < result.params.uncompressed
    assert result.recipe.name == "from pretrained"
    assert (tmp_path / "out" / "model.onnx").is_file()
