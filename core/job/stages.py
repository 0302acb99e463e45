"""Training and compressing one model of a job: build (or warm-start) the composed
model, train it, then merge, measure, choose ranks, fine-tune and measure again."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from core.calibration import truncation_bases
from core.errors import DataError, SpecError
from core.events import StopCheck
from core.factorize import eligible_layers, factorize, merge
from core.job.blocks import curve_with_test
from core.job.finetune_search import FinetuneSearch, Searched, search_after_finetune
from core.job.progress import FINETUNE_END, RANKS_END, Progress
from core.lowrank import Svd, dense_from_lowrank, to_lowrank, truncate
from core.measure import count_flops, count_params, evaluate, measure_latency_ms
from core.ranks import ProgressCallback, RankChoice, choose_ranks
from core.rate_choice import RateChoice, finetune_at_best_rate
from core.recipes import FROM_YOUR_MODEL, distilled_from, epochs_text
from core.spec import CompressSpec, JobSpec
from core.train import Distillation, seed_everything, train_model

# The data split is a property of the dataset, not of a run: the same for every seed.
SPLIT_SEED = 0
# The fine-tuning after truncation tries each of compress.finetune_lr_scales (shares of
# the training's learning rate) from the same cut and keeps the better on the
# validation split: the reduced rate suits a light cut, the training's own a deep one
# (bench/README.md, "LoRITa's own fine-tuning rate"). This is the reduced one, the rate
# the bench's fixed-rate rows use.
FINETUNE_LR_SCALE = 0.1


def _check_forward(model: nn.Module, splits: Any, spec: JobSpec) -> None:
    """One tiny forward pass, so a shape problem is reported before training starts."""
    sample = splits.train[0][0].unsqueeze(0)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            logits = model(sample)
    except (RuntimeError, ValueError) as error:
        raise DataError(
            f"{spec.model.arch} cannot process this dataset's inputs of shape "
            f"{tuple(sample.shape[1:])}: {error}. Choose another arch or dataset, or leave "
            "model.in_channels / model.image_size unset so they follow the data"
        ) from error
    finally:
        model.train(was_training)
    if logits.dim() != 2 or logits.shape[1] < splits.num_classes:
        raise DataError(
            f"{spec.model.arch} returns outputs of shape {tuple(logits.shape)}; expected "
            f"(batch, {splits.num_classes}) class scores"
        )


def excluded_layers(spec: JobSpec) -> list[str]:
    """The architecture's default exclusions plus the spec's own lorita.exclude globs."""
    from core.models import default_exclude

    return list(default_exclude(spec.model.arch)) + list(spec.lorita.exclude or [])


def _build(spec: JobSpec, factor: int, seed: int, start: nn.Module | None = None) -> nn.Module:
    """The composed model to train: from a random init, or (`start`, the user's model)
    with every eligible layer as the balanced split of its weights (on a copy)."""
    from core.models import build_model

    seed_everything(seed)
    from_scratch = start is None
    if from_scratch:
        model = build_model(
            spec.model.arch, spec.model.num_classes, spec.model.in_channels, spec.model.image_size
        )
    else:  # factorized on a copy: the user's model is truncated on its own later
        model = start
    return factorize(
        model,
        factor,
        include=spec.lorita.include,
        exclude=excluded_layers(spec),
        forward_order=spec.lorita.forward_order,
        inplace=from_scratch,
        init="random" if from_scratch else "pretrained",
    ).train()


class JobStages:
    """One job's data, device and progress, and what is done to each of its models:
    train (build, then train) and compress (merge, choose ranks, fine-tune, measure)."""

    def __init__(
        self,
        spec: JobSpec,
        splits: Any,
        device: str,
        progress: Progress,
        should_stop: StopCheck,
        checkpoint_dir: Path | None,
    ) -> None:
        self.spec = spec
        self.splits = splits
        self.device = device
        self.progress = progress
        self.should_stop = should_stop
        self.checkpoint_dir = checkpoint_dir
        self.input_shape = (spec.model.in_channels, spec.model.image_size, spec.model.image_size)
        self.amp = bool(spec.train.amp)
        self.user_model: nn.Module | None = None  # set when the job starts from weights
        self.tag = (
            f"{spec.data.dataset}|{spec.data.val_fraction}|{spec.data.train_subset}|{SPLIT_SEED}"
        )

    def train(self, factor: int, run: str, span: tuple[float, float]) -> tuple[nn.Module, list]:
        model = _build(self.spec, factor, self.spec.train.seed, start=self.user_model)
        _check_forward(model, self.splits, self.spec)
        checkpoint = self.checkpoint_dir / f"{run}.pt" if self.checkpoint_dir else None
        self.progress.stage(
            "train" if run == "lorita" else "baseline",
            f"training {self.spec.model.arch} with N={factor} "
            f"for {epochs_text(self.spec.train.epochs)} on {self.device}",
            span[0],
        )
        history = train_model(
            model,
            self.splits,
            self.spec.train,
            device=self.device,
            run=run,
            on_event=self.progress.forward,
            should_stop=self.should_stop,
            checkpoint_path=checkpoint,
            progress_span=span,
            checkpoint_tag=self.tag,
        )
        return model, history

    def compress(
        self, trained: nn.Module, run: str, search_span: tuple[float, float]
    ) -> dict[str, Any]:
        """Merge, measure, choose ranks and build the compact model of a trained model."""
        spec, device = self.spec, self.device
        merged = merge(trained).to(device).eval()
        names = eligible_layers(merged, include=spec.lorita.include, exclude=excluded_layers(spec))
        if not names:
            raise SpecError(
                "no layer is eligible for compression; check lorita.include / lorita.exclude"
            )
        started = time.monotonic()
        params, flops = count_params(merged), count_flops(merged, self.input_shape)
        low, high = search_span

        def on_search(fraction: float, message: str) -> None:
            self.progress.stage("rank_search", f"{run}: {message}", low + (high - low) * fraction)

        bases = self.bases(merged, names)
        on_search(0.0, "choosing ranks on the validation split")
        choice = self.choose_ranks(
            merged,
            names,
            spec.compress,
            params=params,
            flops=flops,
            on_progress=on_search,
            bases=bases,
        )
        search_time = time.monotonic() - started
        searched = None
        if self._searches_after_finetune(choice):
            choice, searched = self._search_after_finetune(
                merged, choice, run, params, flops, bases
            )
        ranks = choice.ranks
        lowrank = to_lowrank(merged, ranks, bases=bases).to(device).eval()
        chosen_test = evaluate(lowrank, self.splits.test, device, amp=self.amp).accuracy
        tuned: RateChoice | None = None
        if searched is not None:
            lowrank, tuned = searched.lowrank, searched.finetuned
        elif spec.compress.finetune_epochs > 0:
            tuned = self._finetune(lowrank, merged, run)
        history = tuned.history if tuned is not None else []
        # The dense export: of the fine-tuned compact model when there is one.
        truncated = (
            dense_from_lowrank(lowrank, merged).eval()
            if searched is not None or spec.compress.finetune_epochs > 0
            else truncate(merged, ranks, bases=bases).to(device).eval()
        )
        search = {**choice.search, "time_s": search_time}
        if searched is not None:
            search["before_finetune"] = searched.start
            search["after_finetune"] = searched.tried
        block = {
            "merged": merged,
            "lowrank": lowrank,
            "truncated": truncated,
            "names": names,
            "bases": bases,
            "choice": choice,
            "accuracy": {
                "uncompressed": evaluate(merged, self.splits.test, device, amp=self.amp).accuracy,
                "compressed": (
                    evaluate(lowrank, self.splits.test, device, amp=self.amp).accuracy
                    if history
                    else chosen_test
                ),
            },
            "val_accuracy": self._val_accuracy(choice, merged, lowrank, finetuned=bool(history)),
            "params": {"uncompressed": params, "compressed": count_params(lowrank)},
            "flops": {
                "uncompressed": flops,
                "compressed": count_flops(lowrank, self.input_shape),
            },
            "latency_ms": {
                "uncompressed": measure_latency_ms(merged, self.input_shape, device=device),
                "compressed": measure_latency_ms(lowrank, self.input_shape, device=device),
            },
            "ranks": dict(ranks),
            "curve": curve_with_test(choice, chosen_test),
            "chosen": {"params_kept": choice.params_kept, "flops_kept": choice.flops_kept},
            "rank_search": search,
            "finetune_history": history,
            "finetune_lr_scale": tuned.lr_scale if tuned is not None else None,
            "finetune_lr_trials": tuned.trials if tuned is not None else None,
        }
        return block

    def choose_ranks(
        self,
        merged: nn.Module,
        names: list[str],
        compress: CompressSpec,
        *,
        params: int,
        flops: int,
        on_progress: ProgressCallback | None = None,
        bases: dict[str, Svd] | None = None,
    ) -> RankChoice:
        """Ranks for the layers `names` of `merged` (a dense model of `params` parameters
        and `flops` FLOPs), chosen on the job's validation split; `bases` as
        `self.bases` gives them (None: plain SVD)."""
        return choose_ranks(
            merged,
            names,
            compress,
            val_dataset=self.splits.val,
            input_shape=self.input_shape,
            device=self.device,
            amp=self.amp,
            total_params=params,
            total_flops=flops,
            should_stop=self.should_stop,
            on_progress=on_progress,
            bases=bases,
        )

    def bases(self, merged: nn.Module, names: list[str]) -> dict[str, Svd] | None:
        """The truncation bases of `merged`'s layers as compress.truncation asks
        (core.calibration), from the job's training split."""
        return truncation_bases(
            merged, names, self.spec.compress.truncation, self.splits.train, device=self.device
        )

    def _val_accuracy(
        self, choice: RankChoice, merged: nn.Module, lowrank: nn.Module, *, finetuned: bool
    ) -> dict[str, float]:
        """Validation accuracy before/after; the search's own numbers when it already looked
        at the whole split (a full pass over it is the costliest step on a CPU)."""
        whole = choice.verified_samples == len(self.splits.val)
        if whole and choice.reference_val_accuracy is not None:
            uncompressed = choice.reference_val_accuracy
        else:
            uncompressed = evaluate(merged, self.splits.val, self.device, amp=self.amp).accuracy
        if whole and not finetuned and choice.val_accuracy is not None:
            compressed = choice.val_accuracy
        else:
            compressed = evaluate(lowrank, self.splits.val, self.device, amp=self.amp).accuracy
        return {"uncompressed": uncompressed, "compressed": compressed}

    def finetune_teacher(self, merged: nn.Module) -> Distillation | None:
        """The fine-tuning's teacher, as core.recipes.distilled_from says: the user's model
        or `merged`, the model before truncation."""
        source = distilled_from(self.spec)
        if source is None:
            return None
        return Distillation(self.user_model if source == FROM_YOUR_MODEL else merged)

    def _searches_after_finetune(self, choice: RankChoice) -> bool:
        compress = self.spec.compress
        return bool(
            compress.finetune_search
            and compress.finetune_epochs
            and compress.strategy == "accuracy"
            and choice.beyond
        )

    def _search_after_finetune(
        self,
        merged: nn.Module,
        choice: RankChoice,
        run: str,
        params: int,
        flops: int,
        bases: dict[str, Svd] | None,
    ) -> tuple[RankChoice, Searched]:
        """The search's tolerance held after fine-tuning (core.job.finetune_search): the
        RankChoice of the allocation kept, and the walk (its fine-tuned model included)."""
        device, val = self.device, self.splits.val

        def build(ranks: dict[str, int]) -> nn.Module:
            return to_lowrank(merged, ranks, bases=bases).to(device).eval()

        def marks(model: nn.Module) -> torch.Tensor:
            return evaluate(model, val, device, amp=self.amp, per_sample=True).correct

        def kept(model: nn.Module) -> tuple[float, float]:
            return (
                count_params(model) / params,
                count_flops(model, self.input_shape) / max(flops, 1),
            )

        # The first allocation fine-tuned chooses the rate; the walk's later ones reuse
        # it, so the walk costs one fine-tuning per allocation beyond that.
        first: list[RateChoice] = []

        def tune(model: nn.Module, note: str) -> RateChoice:
            if not first:
                first.append(self._finetune(model, merged, run, note))
                return first[0]
            done = self._finetune(model, merged, run, note, scales=[first[0].lr_scale])
            # The report keeps the rates compared where the rate was chosen.
            return RateChoice(done.history, done.lr_scale, first[0].trials)

        walk = FinetuneSearch(
            build=build,
            finetune=tune,
            val_marks=marks,
            kept=kept,
            max_drop=self.spec.compress.max_accuracy_drop,
        )
        reference = marks(merged)
        searched = search_after_finetune(walk, choice, reference)
        if searched.ranks == choice.ranks:
            return choice, searched
        params_kept, flops_kept = kept(searched.lowrank)
        moved = RankChoice(
            ranks=searched.ranks,
            params_kept=params_kept,
            flops_kept=flops_kept,
            val_accuracy=searched.val_before,
            # Both on the whole validation split, as the walk measured them.
            reference_val_accuracy=reference.double().mean().item(),
            curve=choice.curve,
            search=choice.search,
            spectra=choice.spectra,
            verified_samples=len(val),
        )
        return moved, searched

    def _finetune(
        self,
        lowrank: nn.Module,
        merged: nn.Module,
        run: str,
        note: str | None = None,
        scales: Sequence[float] | None = None,
    ) -> RateChoice:
        """Fine-tune the compact `lowrank` in place (distilled as the spec says) at each
        of `scales` x the training's learning rate from the same start, and keep the one
        best on the validation split (a tie keeps the earlier). `note` goes with the
        progress message. `scales` None: compress.finetune_lr_scales."""
        scales = self.spec.compress.finetune_lr_scales if scales is None else scales
        width = (FINETUNE_END - RANKS_END) / len(scales)

        def at(candidate: nn.Module, scale: float, index: int) -> list:
            words = f"at {scale:g}x the learning rate" if len(scales) > 1 else None
            span = (RANKS_END + index * width, RANKS_END + (index + 1) * width)
            return self._finetune_at(candidate, merged, run, scale, span, note, words)

        def val_accuracy(candidate: nn.Module) -> float:
            return evaluate(candidate, self.splits.val, self.device, amp=self.amp).accuracy

        return finetune_at_best_rate(lowrank, scales, at, val_accuracy)

    def _finetune_at(
        self,
        lowrank: nn.Module,
        merged: nn.Module,
        run: str,
        lr_scale: float,
        span: tuple[float, float],
        note: str | None,
        rate_words: str | None,
    ) -> list:
        """One fine-tuning of `lowrank` in place at `lr_scale` x the training's rate, its
        progress over `span`."""
        spec = self.spec
        recipe = spec.train.model_copy(
            update={
                "epochs": spec.compress.finetune_epochs,
                "lr": spec.train.lr * lr_scale,
                "compile": False,
                "channels_last": False,
            }
        )
        words = ", ".join(w for w in (note, rate_words) if w)
        message = f"fine-tuning the compressed {run} model" + (f" ({words})" if words else "")
        self.progress.stage("finetune", message, span[0])
        history = train_model(
            lowrank,
            self.splits,
            recipe,
            device=self.device,
            # Named by its rate, as the comparisons' fine-tunings are (and the N=1
            # model's by its run): the events and the history say which rate each
            # epoch ran at, and whose.
            run=f"{'' if run == 'lorita' else run + ' '}finetune at {lr_scale:.3g}x lr",
            on_event=self.progress.forward,
            should_stop=self.should_stop,
            progress_span=span,
            teacher=self.finetune_teacher(merged),
        )
        lowrank.eval()
        return history
