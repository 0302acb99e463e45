"""The training loop: resume equals an uninterrupted run, cancel, divergence, schedules."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch.utils.data import TensorDataset

from core.batching import Batches, augment_batch
from core.errors import Cancelled, TrainingDiverged
from core.factorize import factorize
from core.models import build_model
from core.train import seed_everything, train_model
from tests.core.train_recipe import plain_recipe


def _splits(count: int = 600, scale: float = 1.0, seed: int = 0) -> SimpleNamespace:
    """A small learnable problem: the class is which quarter of the image is brightest."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(count, 1, 8, 8, generator=generator)
    y = torch.randint(0, 4, (count,), generator=generator)
    for label in range(4):
        rows, cols = divmod(label, 2)
        x[y == label, :, rows * 4 : rows * 4 + 4, cols * 4 : cols * 4 + 4] += 1.5
    x = x * scale
    cut = count * 4 // 5
    return SimpleNamespace(
        train=TensorDataset(x[:cut], y[:cut]),
        val=TensorDataset(x[cut:], y[cut:]),
        is_image=True,
        in_channels=1,
        image_size=8,
    )


def _model(factor: int = 3) -> torch.nn.Module:
    seed_everything(0)
    return factorize(build_model("fcn", 4, 1, 8, hidden=(32, 32)), factor)


def _without_times(history):
    return [{k: v for k, v in e.items() if k != "epoch_time_s"} for e in history]


def test_training_learns_and_reports_epochs():
    events = []
    history = train_model(_model(), _splits(), plain_recipe(), device="cpu", on_event=events.append)
    assert [e["epoch"] for e in history] == [1, 2, 3]
    assert history[-1]["val_acc"] > 0.8
    epochs = [e for e in events if e["type"] == "epoch"]
    assert epochs == history
    progress = [e["progress"] for e in events]
    assert progress == sorted(progress) and progress[-1] == pytest.approx(1.0)


def test_resume_after_cancel_matches_uninterrupted_run(tmp_path):
    splits, spec = _splits(), plain_recipe()
    reference = _model()
    reference_history = train_model(reference, splits, spec, device="cpu")

    checkpoint = tmp_path / "run.pt"
    calls = {"n": 0}

    def stop_in_second_epoch() -> bool:
        calls["n"] += 1
        return calls["n"] > 8 + 3  # 8 batches per epoch: stop at batch 4 of epoch 2

    interrupted = _model()
    with pytest.raises(Cancelled):
        train_model(
            interrupted,
            splits,
            spec,
            device="cpu",
            checkpoint_path=checkpoint,
            should_stop=stop_in_second_epoch,
        )
    assert checkpoint.exists()
    saved = torch.load(checkpoint, weights_only=True)
    assert saved["epoch"] == 1

    resumed = _model()
    events = []
    history = train_model(
        resumed, splits, spec, device="cpu", checkpoint_path=checkpoint, on_event=events.append
    )
    assert [e["epoch"] for e in events if e["type"] == "epoch"] == [2, 3]
    assert _without_times(history) == _without_times(reference_history)
    for key, value in reference.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key


def test_checkpoint_of_another_recipe_is_not_resumed(tmp_path):
    checkpoint = tmp_path / "run.pt"
    splits = _splits()
    train_model(_model(), splits, plain_recipe(), device="cpu", checkpoint_path=checkpoint)
    changed = plain_recipe(epochs=2, lr=2e-3)
    events = []
    train_model(
        _model(), splits, changed, device="cpu", checkpoint_path=checkpoint, on_event=events.append
    )
    assert [e["epoch"] for e in events if e["type"] == "epoch"] == [1, 2]


def test_cancel_raises_before_the_next_batch():
    with pytest.raises(Cancelled):
        train_model(_model(), _splits(), plain_recipe(), device="cpu", should_stop=lambda: True)


def test_divergence_names_the_learning_rate():
    spec = plain_recipe(optimizer="sgd", lr=0.5)
    with pytest.raises(
        TrainingDiverged, match=r"nan at epoch 1 batch 1; lower train.lr \(now 0.5\)"
    ):
        train_model(_model(factor=1), _splits(scale=1e38), spec, device="cpu")


@pytest.mark.parametrize("schedule", ["cosine", "onecycle", "step", "plateau", "constant"])
@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_every_schedule_trains_and_resumes(tmp_path, schedule, optimizer):
    spec = plain_recipe(epochs=2, schedule=schedule, optimizer=optimizer, lr=0.01)
    splits = _splits(count=200)
    checkpoint = tmp_path / "run.pt"
    first = train_model(_model(), splits, spec, device="cpu", checkpoint_path=checkpoint)
    # A finished checkpoint is loaded (weights_only) and nothing is retrained.
    events = []
    again = train_model(
        _model(), splits, spec, device="cpu", checkpoint_path=checkpoint, on_event=events.append
    )
    assert again == first and not [e for e in events if e["type"] == "epoch"]


def test_batches_are_seeded_per_epoch():
    data = TensorDataset(torch.arange(10.0)[:, None], torch.arange(10))
    batches = Batches(data, 4, "cpu", shuffle=True, seed=3)
    first = torch.cat([y for _, y in batches])
    again = torch.cat([y for _, y in Batches(data, 4, "cpu", shuffle=True, seed=3)])
    batches.set_epoch(1)
    second = torch.cat([y for _, y in batches])
    assert torch.equal(first, again) and not torch.equal(first, second)
    assert sorted(first.tolist()) == list(range(10))


def test_augmentation_crops_and_flips_whole_batches():
    images = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8)
    assert torch.equal(augment_batch(images, pad=0, flip=False), images)
    shifted = augment_batch(images, pad=1, flip=False, generator=torch.Generator().manual_seed(0))
    assert shifted.shape == images.shape
    # Every output pixel is an input pixel of the same image or zero padding.
    for index in range(2):
        values = set(images[index].flatten().tolist()) | {0.0}
        assert set(shifted[index].flatten().tolist()) <= values
    mirrored = augment_batch(images, pad=0, flip=True, generator=torch.Generator().manual_seed(1))
    for index in range(2):
        assert torch.equal(mirrored[index], images[index]) or torch.equal(
            mirrored[index], images[index].flip(2)
        )
