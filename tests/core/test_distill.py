"""Fine-tuning by distillation (compress.distill): the student moves towards the
teacher's outputs, a job picks the right teacher, and the switch reaches the job."""

from __future__ import annotations

import copy

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from core.job.progress import Progress
from core.job.stages import JobStages
from core.lowrank import to_lowrank
from core.models import build_model
from core.recipes import distilled_from
from core.spec import JobSpec
from core.train import Distillation, seed_everything, train_model
from tests.core.train_recipe import plain_recipe


def _kl_to(teacher: nn.Module, student: nn.Module, dataset) -> float:
    x = torch.stack([dataset[i][0] for i in range(len(dataset))])
    with torch.no_grad():
        t, s = teacher(x).log_softmax(1), student(x).log_softmax(1)
    return float(nn.functional.kl_div(s, t, reduction="batchmean", log_target=True))


class _Renamed(nn.Module):
    """A model with its classes renamed: as sharp as the model, a different function."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.order = torch.roll(torch.arange(10), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)[:, self.order]


@pytest.fixture(scope="module")
def teacher_and_cut(digits):
    """A trained FCN and its truncation to rank 12 (but the output layer)."""
    seed_everything(0)
    model = build_model("fcn", 10, 1, 8)
    train_model(model, digits, plain_recipe(epochs=4), device="cpu")
    model.eval()
    ranks = {"layers.0": 12, "layers.3": 12, "layers.6": 12}
    return model, to_lowrank(model, ranks).eval()


def test_distilling_teaches_the_teachers_function_not_only_the_labels(digits, teacher_and_cut):
    model, cut = teacher_and_cut
    # A teacher that disagrees with the labels: only distillation can follow it.
    teacher = _Renamed(model).eval()
    recipe = plain_recipe(epochs=2)
    labels_only, distilled = copy.deepcopy(cut), copy.deepcopy(cut)
    train_model(labels_only, digits, recipe, device="cpu")
    train_model(distilled, digits, recipe, device="cpu", teacher=Distillation(teacher))
    start = _kl_to(teacher, cut, digits.test)
    # Held-out images: the distilled student moved towards the teacher, the one trained
    # on labels alone (same start, recipe and batches) away from it.
    assert _kl_to(teacher, distilled, digits.test) < start / 3
    assert _kl_to(teacher, labels_only, digits.test) > start


def test_the_blend_is_the_label_loss_at_weight_zero_and_adds_nothing_for_a_twin(digits):
    seed_everything(0)
    model = build_model("fcn", 10, 1, 8).eval()
    x = torch.stack([digits.test[i][0] for i in range(32)])
    logits = model(x)
    loss = torch.tensor(1.25)
    assert Distillation(model, weight=0.0).blend(loss, logits, x).item() == pytest.approx(1.25)
    # The student equal to its teacher: the distillation term is 0, the labels keep 1 - w.
    twin = Distillation(copy.deepcopy(model), weight=0.9).blend(loss, logits, x)
    assert twin.item() == pytest.approx(0.1 * 1.25, abs=1e-6)
    other = build_model("fcn", 10, 1, 8).eval()
    assert Distillation(other, weight=0.9).blend(loss, logits, x).item() > twin.item()


def _stages(digits, weights=None, **compress) -> JobStages:
    """The stages of a resolved job (one epoch of fine-tuning), from `weights` if given."""
    model = {"arch": "fcn", **({"weights": str(weights)} if weights else {})}
    spec = JobSpec.model_validate(
        {
            "model": model,
            "data": {"dataset": "digits"},
            "compress": {"finetune_epochs": 1, **compress},
        }
    )
    return JobStages(spec, digits, "cpu", Progress(lambda event: None), lambda: False, None)


def test_a_job_distils_from_the_users_model_when_it_has_one(digits, teacher_and_cut, tmp_path):
    teacher, cut = teacher_and_cut
    scratch = _stages(digits)
    assert scratch.spec.compress.distill is True  # on by default
    assert scratch.finetune_teacher(cut).model is cut
    assert distilled_from(scratch.spec) == "the model before truncation"

    weights = tmp_path / "fcn.safetensors"
    save_file({k: v.contiguous() for k, v in teacher.state_dict().items()}, str(weights))
    warm = _stages(digits, weights)
    warm.user_model = teacher  # as the pipeline sets it for a job from weights
    assert warm.finetune_teacher(cut).model is teacher
    assert distilled_from(warm.spec) == "your model"

    for stages in (_stages(digits, distill=False), _stages(digits, finetune_epochs=0)):
        assert stages.finetune_teacher(cut) is None
        assert distilled_from(stages.spec) is None


def test_the_switch_changes_what_the_job_fine_tunes(tmp_path):
    from core.pipeline import run_job

    def job(distill: bool):
        spec = JobSpec.model_validate(
            {
                "model": {"arch": "fcn"},
                "data": {"dataset": "digits"},
                "lorita": {"factor": 2},
                "train": {"epochs": 2},
                "compress": {
                    "strategy": "uniform",
                    "keep_fraction": 0.2,
                    "finetune_epochs": 1,
                    "distill": distill,
                },
            }
        )
        return run_job(spec, tmp_path / str(distill), device="cpu")

    on, off = job(True), job(False)
    assert on.spec["compress"]["distill"] is True and off.spec["compress"]["distill"] is False
    # The report says whom the fine-tuning learned from.
    assert on.recipe.distilled_from == "the model before truncation"
    assert off.recipe.distilled_from is None and off.recipe.finetune_epochs == 1
    # Same training and ranks; only the fine-tuning's loss differs.
    assert on.ranks == off.ranks
    assert on.accuracy.uncompressed == off.accuracy.uncompressed
    on_loss = on.finetune_history[0].train_loss
    off_loss = off.finetune_history[0].train_loss
    assert on_loss != pytest.approx(off_loss, rel=1e-3)
