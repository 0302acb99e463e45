"""The training loop: one readable loop for plain and LoRITa-factorized models.

Weight decay is applied to every weight matrix and every factor of a composed
layer (that is the LoRITa penalty); biases and normalisation parameters (all
tensors with fewer than two dimensions) are not decayed, as usual.

The loop checkpoints after every epoch (atomic write) and resumes from the
checkpoint if one exists, checks `should_stop()` before every batch, and turns
the failures a user can fix (NaN loss, out of memory) into actionable errors.
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from core.atomic import atomic_path
from core.batching import Batches, augment_batch, autocast_context, crop_padding, model_input
from core.devices import is_out_of_memory
from core.errors import Cancelled, DataError, OutOfMemory, TrainingDiverged
from core.events import Event, EventSink, StopCheck, ignore_event, never_stop
from core.measure import evaluate
from core.spec import TrainSpec

# Batch events are for progress bars: at most this many per second.
BATCH_EVENTS_PER_SECOND = 2.0
# Random crops need some room; below this size the recipe does not crop.
MIN_CROP_SIZE = 28
CHECKPOINT_VERSION = 1


def seed_everything(seed: int) -> None:
    """Seed every generator a run touches (model init, dropout, numpy, random)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _parameter_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    decay, no_decay = [], []
    for parameter in model.parameters():
        if parameter.requires_grad:
            (decay if parameter.dim() >= 2 else no_decay).append(parameter)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def build_optimizer(model: nn.Module, spec: TrainSpec) -> torch.optim.Optimizer:
    groups = _parameter_groups(model, spec.weight_decay)
    if spec.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=spec.lr, momentum=spec.momentum)
    if spec.optimizer == "adam":
        # Adam's weight_decay is the L2 penalty in the loss: exactly the LoRITa objective.
        return torch.optim.Adam(groups, lr=spec.lr)
    return torch.optim.AdamW(groups, lr=spec.lr)


class _Schedule:
    """One interface over per-step, per-epoch and plateau schedules."""

    def __init__(self, optimizer: torch.optim.Optimizer, spec: TrainSpec, steps: int) -> None:
        total = max(1, spec.epochs * steps)
        self.kind = spec.schedule
        self.scheduler: Any = None
        if self.kind == "cosine":
            self.scheduler = torch.optim.lr_scheduler.LambdaLR(
                optimizer, lambda step: 0.5 * (1.0 + math.cos(math.pi * min(step, total) / total))
            )
        elif self.kind == "onecycle":
            self.scheduler = torch.optim.lr_scheduler.OneCycleLR(
                optimizer, max_lr=spec.lr, total_steps=total
            )
        elif self.kind == "step":
            milestones = sorted({max(1, spec.epochs // 2), max(1, (3 * spec.epochs) // 4)})
            self.scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones, 0.1)
        elif self.kind == "plateau":
            # As in the authors' runs: cut by 10x when training accuracy stops improving.
            self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
                optimizer, mode="max", factor=0.1, patience=max(2, spec.epochs // 10)
            )

    def after_step(self) -> None:
        if self.kind in ("cosine", "onecycle"):
            self.scheduler.step()

    def after_epoch(self, train_accuracy: float) -> None:
        if self.kind == "step":
            self.scheduler.step()
        elif self.kind == "plateau":
            self.scheduler.step(train_accuracy)

    def state_dict(self) -> dict[str, Any]:
        return {} if self.scheduler is None else self.scheduler.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.scheduler is not None and state:
            self.scheduler.load_state_dict(state)


def _fingerprint(model: nn.Module, spec: TrainSpec, run: str, tag: str) -> str:
    """What a checkpoint must match to be resumed: recipe, run, parameter shapes, tag."""
    shapes = {name: list(p.shape) for name, p in model.state_dict().items()}
    return json.dumps(
        {"spec": spec.model_dump(), "run": run, "shapes": shapes, "tag": tag}, sort_keys=True
    )


def _save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # Atomic: a crash while writing leaves the previous checkpoint intact.
    with atomic_path(path) as temporary:
        torch.save(state, temporary)


def _load_checkpoint(path: Path | None, fingerprint: str) -> dict[str, Any] | None:
    if path is None or not path.exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - an unreadable checkpoint just means starting over
        return None
    if state.get("version") != CHECKPOINT_VERSION or state.get("fingerprint") != fingerprint:
        return None  # from another recipe or model: start fresh, it gets overwritten
    return state


def _rng_state(device: torch.device) -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _restore_rng(state: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


@dataclass
class Distillation:
    """Knowledge distillation from `model`: the loss becomes
    (1 - weight) * cross-entropy + weight * T^2 * KL(teacher || student) at temperature T.

    Why: a truncated or warm-started model is close to a model that already computes the
    right function; its soft outputs carry far more per sample than the label, so a few
    epochs of matching them recover more than the labels alone (Hinton et al. 2015).
    """

    model: nn.Module
    weight: float = 0.9
    temperature: float = 4.0

    def blend(self, loss: Tensor, logits: Tensor, inputs: Tensor) -> Tensor:
        with torch.no_grad():
            self.model.eval()
            target = self.model(inputs).float()
        t = self.temperature
        kl = nn.functional.kl_div(
            nn.functional.log_softmax(logits.float() / t, dim=1),
            nn.functional.log_softmax(target / t, dim=1),
            reduction="batchmean",
            log_target=True,
        )
        return (1.0 - self.weight) * loss + self.weight * t * t * kl


class _BatchEvents:
    """Throttled batch events: at most BATCH_EVENTS_PER_SECOND."""

    def __init__(self, sink: EventSink) -> None:
        self.sink = sink
        self.last = 0.0

    def maybe_emit(self, event_factory) -> None:
        now = time.monotonic()
        if now - self.last >= 1.0 / BATCH_EVENTS_PER_SECOND:
            self.last = now
            self.sink(event_factory())


def train_model(
    model: nn.Module,
    splits: Any,
    train_spec: TrainSpec,
    *,
    device: str | torch.device,
    run: str = "lorita",
    on_event: EventSink = ignore_event,
    should_stop: StopCheck = never_stop,
    checkpoint_path: Path | None = None,
    progress_span: tuple[float, float] = (0.0, 1.0),
    checkpoint_tag: str = "",
    teacher: Distillation | None = None,
) -> list[Event]:
    """Train `model` in place on `splits.train`, validating on `splits.val` each epoch.

    `train_spec` must be resolved (no None fields, see core.recipes.resolve_spec).
    Returns the history: one epoch dict per epoch (the "epoch" events).
    `checkpoint_tag` is mixed into the checkpoint fingerprint (e.g. the dataset).
    `teacher`: also match this model's outputs (knowledge distillation, see Distillation).
    """
    device = torch.device(device)
    spec = train_spec
    checkpoint_path = Path(checkpoint_path) if checkpoint_path is not None else None
    model.to(device)
    if spec.channels_last:
        model.to(memory_format=torch.channels_last)

    train_batches = Batches(splits.train, spec.batch_size, device, shuffle=True, seed=spec.seed)
    val_batches = Batches(splits.val, max(spec.batch_size, 512), device)
    steps = len(train_batches)
    if steps == 0:
        raise DataError("the training split is empty; use a larger dataset or train_subset")

    optimizer = build_optimizer(model, spec)
    schedule = _Schedule(optimizer, spec, steps)
    fingerprint = _fingerprint(model, spec, run, checkpoint_tag)

    start_epoch, history = 0, []
    checkpoint = _load_checkpoint(checkpoint_path, fingerprint)
    if checkpoint is not None:
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        schedule.load_state_dict(checkpoint["scheduler"])
        start_epoch = int(checkpoint["epoch"])
        history = list(checkpoint["history"])
        _restore_rng(checkpoint["rng"], device)
    else:
        seed_everything(spec.seed)

    image_size = getattr(splits, "image_size", 0) or 0
    in_channels = getattr(splits, "in_channels", 0) or 0
    augment = bool(spec.augment) and bool(getattr(splits, "is_image", True))
    pad = crop_padding(image_size) if augment and image_size >= MIN_CROP_SIZE else 0
    # Mirroring only keeps the class for natural (colour) images; it breaks digits and letters.
    flip = augment and in_channels == 3

    step_model = torch.compile(model) if spec.compile and device.type == "cuda" else model
    criterion = nn.CrossEntropyLoss(label_smoothing=spec.label_smoothing)
    low, high = progress_span
    batch_events = _BatchEvents(on_event)
    # A host sync per batch to check the loss costs GPU throughput: check every few batches.
    check_every = 1 if device.type == "cpu" else 20

    def progress(epoch: int, batch: int) -> float:
        done = (epoch + batch / steps) / spec.epochs
        return low + (high - low) * min(1.0, done)

    try:
        for epoch in range(start_epoch, spec.epochs):
            started = time.monotonic()
            train_batches.set_epoch(epoch)
            augment_rng = torch.Generator().manual_seed(spec.seed * 7_919 + epoch)
            step_model.train()
            loss_sum = torch.zeros((), dtype=torch.float64, device=device)
            correct = torch.zeros((), dtype=torch.long, device=device)
            for batch, (inputs, labels) in enumerate(train_batches):
                if should_stop():
                    raise Cancelled(f"cancelled during {run} training, epoch {epoch + 1}")
                if pad or flip:
                    inputs = augment_batch(inputs, pad=pad, flip=flip, generator=augment_rng)
                with autocast_context(device, bool(spec.amp)):
                    logits = step_model(model_input(inputs, bool(spec.channels_last)))
                    loss = criterion(logits.float(), labels)
                    if teacher is not None:
                        loss = teacher.blend(loss, logits, inputs)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                schedule.after_step()
                loss_sum += loss.detach().double() * len(labels)
                correct += (logits.detach().argmax(1) == labels).sum()
                if (batch + 1) % check_every == 0 or batch + 1 == steps:
                    _check_finite(loss_sum, epoch, batch, spec)
                batch_events.maybe_emit(
                    lambda e=epoch, b=batch: {
                        "type": "batch",
                        "run": run,
                        "epoch": e + 1,
                        "batch": b + 1,
                        "batches": steps,
                        "progress": progress(e, b + 1),
                    }
                )
            train_loss = loss_sum.item() / train_batches.count
            train_acc = correct.item() / train_batches.count
            val_acc, val_loss = evaluate(
                step_model, val_batches, amp=bool(spec.amp), channels_last=bool(spec.channels_last)
            )
            lr = optimizer.param_groups[0]["lr"]
            schedule.after_epoch(train_acc)
            event = {
                "type": "epoch",
                "run": run,
                "epoch": epoch + 1,
                "epochs": spec.epochs,
                "train_loss": train_loss,
                "train_acc": train_acc,
                "val_loss": val_loss,
                "val_acc": val_acc,
                "lr": lr,
                "epoch_time_s": time.monotonic() - started,
                "progress": progress(epoch + 1, 0),
            }
            history.append(event)
            if checkpoint_path is not None:
                _save_checkpoint(
                    checkpoint_path,
                    {
                        "version": CHECKPOINT_VERSION,
                        "fingerprint": fingerprint,
                        "model": model.state_dict(),
                        "optimizer": optimizer.state_dict(),
                        "scheduler": schedule.state_dict(),
                        "epoch": epoch + 1,
                        "history": history,
                        "rng": _rng_state(device),
                    },
                )
            on_event(event)
    except (RuntimeError, MemoryError) as error:
        if is_out_of_memory(error):
            if device.type == "cuda":
                torch.cuda.empty_cache()
            raise OutOfMemory(
                f"{device.type} ran out of memory during {run} training; lower "
                f"train.batch_size (now {spec.batch_size}) or use a smaller model or images"
            ) from error
        raise
    model.eval()
    return history


def _check_finite(loss_sum: Tensor, epoch: int, batch: int, spec: TrainSpec) -> None:
    if not math.isfinite(loss_sum.item()):
        raise TrainingDiverged(
            f"loss became nan at epoch {epoch + 1} batch {batch + 1}; lower train.lr "
            f"(now {spec.lr:g}) or train.weight_decay (now {spec.weight_decay:g}), or use "
            "a smaller lorita.factor"
        )
