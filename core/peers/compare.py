"""The comparisons of a job: what a user would have done instead of LoRITa, on the same
data and budget, measured the same way, and a verdict on which small model is best.

Every comparison starts from ONE plain N=1 model, trained with the job's recipe:
- plain: truncated by the same rank search as LoRITa's model (the pipeline's baseline);
- plain+finetune: truncated to LoRITa's chosen size (the share of params or FLOPs,
  per compress.target) along the same budget family, then fine-tuned;
both truncate the way LoRITa's model is truncated (compress.truncation);
- pruning: Torch-Pruning structured pruning to LoRITa's chosen size, then fine-tuned.
Fine-tuning is the one LoRITa's compressed model gets (compress.finetune_epochs; with
compress.distill plain+finetune distils from the N=1 model, pruning keeps the labels,
see DISTILLED_PEERS), at the learning rate better on the validation split of those
LoRITa's own fine-tuning tries (compress.finetune_lr_scales); when that is 0 the peers
get 1 epoch, and say so, since a pruned network without any fine-tuning is not what
anyone would ship.

Every model's CPU latency is measured side by side (core.peers.latency) and the verdict
picks the best small model (core.peers.verdict).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from core.calibration import truncation_bases
from core.events import EventSink, StopCheck, ignore_event, never_stop
from core.lowrank import Svd, to_lowrank
from core.measure import count_flops, count_params, evaluate
from core.peers.latency import as_cpu_latency, cpu_latencies
from core.peers.pruning import PruningError, prune_to_budget
from core.peers.verdict import decide
from core.ranks import BudgetFamily, RankProblem
from core.rate_choice import RateChoice, finetune_at_best_rate
from core.recipes import epochs_text
from core.result import ComparisonBlock, CpuLatency, Verdict
from core.spec import CompressSpec, TrainSpec
from core.train import Distillation, train_model

# Fine-tuning epochs of the peers when the job fine-tunes LoRITa's model for none.
DEFAULT_PEER_FINETUNE_EPOCHS = 1
# The peers whose fine-tuning distils from the N=1 model (with compress.distill). Each
# peer gets the fine-tuning that serves it better, measured side by side on FCN-MNIST
# over three seeds (bench/README.md, "Comparisons in the job"): distillation lifts the
# truncated N=1 model by 0.11 point on average but costs the pruned network 0.25, whose
# outputs start far from the teacher's, so pruning fine-tunes on the labels alone.
DISTILLED_PEERS = frozenset({"plain+finetune"})
# Each fine-tuned peer tries the rates LoRITa's own fine-tuning tries
# (compress.finetune_lr_scales: 0.1x and 1x the training's by default) and keeps the one
# better on the validation split. Which rate suits a peer depends on how far its cut
# went: far (the FCN on MNIST at 6.4% of the params, where the cut leaves 9.7% for
# pruning, 83-86% for truncation) 3 epochs at the full rate beat 0.1x by 1 point for
# pruning and 0.6-1 for truncation; near (ResNet20 at 85-70% of the FLOPs) 0.1x is ahead
# by 0.2-0.45 (bench/README.md, "The peers' learning rate" and "ResNet20 on the full
# Fashion-MNIST, again"). A peer held at one of them would be a straw man somewhere.


@dataclass
class CompareContext:
    """What the comparisons need from the job (the pipeline builds it)."""

    splits: Any
    train: TrainSpec  # resolved: no None fields
    compress: CompressSpec
    device: str
    input_shape: tuple[int, ...]
    names: list[str]  # the layers the rank search may truncate
    amp: bool = False
    on_event: EventSink = ignore_event
    on_stage: Callable[[str, float], None] = lambda message, progress: None
    should_stop: StopCheck = never_stop
    span: tuple[float, float] = (0.0, 1.0)


@dataclass
class Outcome:
    """The comparisons' blocks, LoRITa's CPU latency beside them, and the verdict."""

    blocks: dict[str, ComparisonBlock]
    skipped: dict[str, str]
    lorita_latency: CpuLatency
    verdict: Verdict
    models: dict[str, nn.Module] = field(default_factory=dict)


# ------------------------------------------------------------------ building blocks


def truncate_to_share(
    merged: nn.Module,
    names: list[str],
    share: float,
    target: str,
    input_shape: Sequence[int],
    device: str | torch.device = "cpu",
    bases: dict[str, Svd] | None = None,
) -> tuple[nn.Module, dict[str, int]]:
    """The low-rank model of `merged` with the least truncation error whose params (or
    FLOPs) stay within `share`: the budget family the rank search itself walks, on
    `bases` (core.calibration; None: plain SVD)."""
    problem = RankProblem(merged, names, tuple(input_shape), device=device, bases=bases)
    ranks = BudgetFamily(problem, target).ranks_at(share)
    return to_lowrank(merged, ranks, bases=bases).to(device).eval(), dict(ranks)


def finetune_recipe(train: TrainSpec, epochs: int, lr_scale: float) -> TrainSpec:
    """The job's recipe at a reduced learning rate for `epochs` (as LoRITa's fine-tune)."""
    return train.model_copy(
        update={
            "epochs": epochs,
            "lr": train.lr * lr_scale,
            "compile": False,
            "channels_last": False,
        }
    )


def finetune(
    model: nn.Module,
    context: CompareContext,
    run: str,
    epochs: int,
    span: tuple[float, float],
    lr_scale: float,
    teacher: nn.Module | None = None,
) -> list[dict[str, Any]]:
    """Fine-tune `model` in place, distilling from `teacher` when given, at `lr_scale`
    of the training's rate; returns its epoch history."""
    history = train_model(
        model,
        context.splits,
        finetune_recipe(context.train, epochs, lr_scale),
        device=context.device,
        run=run,
        on_event=context.on_event,
        should_stop=context.should_stop,
        progress_span=span,
        teacher=Distillation(teacher) if teacher is not None else None,
    )
    model.eval()
    return history


# ------------------------------------------------------------------ the job's comparisons


def peer_finetune_epochs(compress: CompressSpec) -> tuple[int, str | None]:
    """Epochs the fine-tuned peers get, and a note when it is not LoRITa's own number."""
    if compress.finetune_epochs:
        return compress.finetune_epochs, None
    return DEFAULT_PEER_FINETUNE_EPOCHS, (
        "compress.finetune_epochs is 0 (LoRITa's model is not fine-tuned); this peer was "
        f"fine-tuned for {DEFAULT_PEER_FINETUNE_EPOCHS} epoch, as anyone pruning or "
        "truncating a plain model would"
    )


def run_comparisons(
    context: CompareContext,
    methods: Sequence[str],
    *,
    plain_merged: nn.Module,
    lorita: dict[str, Any],
    plain: dict[str, Any] | None = None,
) -> Outcome:
    """Run `methods` from the trained N=1 model (`plain_merged`, merged, not modified).

    `lorita` is the pipeline's block of LoRITa's compressed model (merged, lowrank,
    accuracy, params, flops); `plain` the same block of the N=1 model compressed by the
    same rank search (needed for "plain").
    """
    target = context.compress.target
    shape = context.input_shape
    test = context.splits.test
    device = context.device
    low, high = context.span
    steps = max(1, sum(m != "plain" for m in methods) + 1)  # + the latency rounds
    step = (high - low) / steps

    lorita_share = {
        "params": lorita["params"]["compressed"] / lorita["params"]["uncompressed"],
        "flops": lorita["flops"]["compressed"] / max(lorita["flops"]["uncompressed"], 1),
    }[target]
    if plain is not None:
        plain_accuracy = plain["accuracy"]["uncompressed"]
    else:
        plain_accuracy = evaluate(plain_merged, test, device, amp=context.amp).accuracy
    plain_params = count_params(plain_merged)
    plain_flops = count_flops(plain_merged, shape)
    epochs, epochs_note = peer_finetune_epochs(context.compress)

    def distils(method: str) -> bool:
        return context.compress.distill and method in DISTILLED_PEERS

    scales = list(context.compress.finetune_lr_scales)

    def how_tuned(method: str, tuned: RateChoice) -> str:
        how = "distilled from the N=1 model" if distils(method) else "on the labels"
        how += f", at {tuned.lr_scale:g}x the training's learning rate"
        if len(tuned.trials) > 1:
            tried = " and ".join(f"{trial['lr_scale']:g}x" for trial in tuned.trials)
            how += f" (the better of {tried} on the validation split)"
        return how

    models: dict[str, nn.Module] = {}
    partial: dict[str, dict[str, Any]] = {}
    skipped: dict[str, str] = {}
    done = 0

    def fine_tuned(model: nn.Module, method: str) -> RateChoice:
        """`model` fine-tuned in place at the rate best on validation of those tried."""
        nonlocal done
        teacher = plain_merged if distils(method) else None
        width = step / len(scales)

        def at(candidate: nn.Module, scale: float, index: int) -> list:
            start = low + done * step + index * width
            run = f"{method} at {scale:.3g}x lr"
            context.on_stage(f"{run}: fine-tuning for {epochs_text(epochs)}", start)
            span = (start, start + width)
            return finetune(candidate, context, run, epochs, span, scale, teacher)

        def val_accuracy(candidate: nn.Module) -> float:
            return evaluate(candidate, context.splits.val, device, amp=context.amp).accuracy

        tuned = finetune_at_best_rate(model, scales, at, val_accuracy)
        done += 1
        return tuned

    for method in methods:
        if method == "plain":
            if plain is None:
                raise ValueError("the plain comparison needs the N=1 model's rank-search block")
            models[method] = plain["lowrank"]
            # The pipeline compresses the N=1 model as it does LoRITa's, fine-tuning
            # included: say so, it is part of what this model's accuracy is.
            plain_history = plain.get("finetune_history") or None
            plain_epochs = len(plain_history or ())
            description = "N=1 model truncated by the same rank search as LoRITa's"
            if plain_epochs:
                description += (
                    f", then fine-tuned for {epochs_text(plain_epochs)} the same way as "
                    "LoRITa's model"
                )
            partial[method] = {
                "description": description,
                "accuracy": plain["accuracy"]["compressed"],
                "ranks": plain["ranks"],
                "curve": plain["curve"],
                "finetune_epochs": plain_epochs,
                "finetune_history": plain_history,
                # Its rate, chosen on validation as LoRITa's (core.job.stages).
                "finetune_lr_scale": plain.get("finetune_lr_scale"),
                "finetune_lr_trials": plain.get("finetune_lr_trials"),
            }
        elif method == "plain+finetune":
            context.on_stage(
                f"plain+finetune: truncating N=1 to {100 * lorita_share:.1f}% of the {target}",
                low + done * step,
            )
            # The same truncation as LoRITa's (compress.truncation); the N=1 rank
            # search's bases when it ran, they are of this very model.
            if plain is not None:
                bases = plain["bases"]
            else:
                bases = truncation_bases(
                    plain_merged,
                    context.names,
                    context.compress.truncation,
                    context.splits.train,
                    device=device,
                )
            lowrank, ranks = truncate_to_share(
                plain_merged, context.names, lorita_share, target, shape, device, bases
            )
            tuned = fine_tuned(lowrank, method)
            models[method] = lowrank
            partial[method] = {
                "description": f"N=1 model truncated to LoRITa's {target} share, then "
                f"fine-tuned for {epochs_text(epochs)}, {how_tuned(method, tuned)}",
                "accuracy": evaluate(lowrank, test, device, amp=context.amp).accuracy,
                "ranks": ranks,
                "sized_to": target,
                "finetune_epochs": epochs,
                "note": epochs_note,
                "finetune_history": tuned.history,
                "finetune_lr_scale": tuned.lr_scale,
                "finetune_lr_trials": tuned.trials,
            }
        elif method == "pruning":
            context.on_stage(
                f"pruning: Torch-Pruning N=1 to {100 * lorita_share:.1f}% of the {target}",
                low + done * step,
            )
            try:
                pruned = prune_to_budget(
                    plain_merged, shape, target=target, keep=lorita_share, closest=True
                )
            except PruningError as error:
                skipped[method] = str(error)
                done += 1
                continue
            note = epochs_note
            if pruned.achieved > lorita_share * 1.02:
                reach = (
                    f"pruning cannot go below {100 * pruned.achieved:.1f}% of the {target} "
                    f"(LoRITa's model keeps {100 * lorita_share:.1f}%): the input and "
                    "output layers keep their width"
                )
                note = f"{reach}; {note}" if note else reach
            tuned = fine_tuned(pruned.model, method)
            models[method] = pruned.model
            partial[method] = {
                "description": f"Torch-Pruning (L2 magnitude, structured) of the N=1 model "
                f"to LoRITa's {target} share, then fine-tuned for {epochs_text(epochs)}, "
                f"{how_tuned(method, tuned)}",
                "accuracy": evaluate(pruned.model, test, device, amp=context.amp).accuracy,
                "pruning": pruned.summary(),
                "sized_to": target,
                "finetune_epochs": epochs,
                "note": note,
                "finetune_history": tuned.history,
                "finetune_lr_scale": tuned.lr_scale,
                "finetune_lr_trials": tuned.trials,
            }
        else:
            raise ValueError(f"unknown comparison {method!r}")

    context.on_stage("measuring latency on the CPU at batch 1 and 64", low + done * step)
    timed = {"n1": plain_merged, "lorita:dense": lorita["merged"], "lorita": lorita["lowrank"]}
    timed.update(models)
    times = cpu_latencies(timed, shape)

    blocks: dict[str, ComparisonBlock] = {}
    for method, values in partial.items():
        model = models[method]
        params, flops = count_params(model), count_flops(model, shape)
        latency = as_cpu_latency(times, "n1", method)
        blocks[method] = ComparisonBlock(
            method=method,
            accuracy={"uncompressed": plain_accuracy, "compressed": values.pop("accuracy")},
            params={"uncompressed": plain_params, "compressed": params},
            flops={"uncompressed": plain_flops, "compressed": flops},
            params_kept=params / plain_params,
            flops_kept=flops / max(plain_flops, 1),
            latency_ms=latency.batch_1,
            latency_cpu=latency,
            **{k: v for k, v in values.items() if v is not None},
        )

    entries = [
        {
            "method": "lorita",
            "accuracy": lorita["accuracy"]["compressed"],
            "kept": lorita_share,
            # One history record per epoch run: what was done, whatever was asked.
            "finetune_epochs": len(lorita.get("finetune_history") or ()),
        }
    ] + [
        {
            "method": method,
            "accuracy": block.accuracy.compressed,
            "kept": block.params_kept if target == "params" else block.flops_kept,
            "finetune_epochs": block.finetune_epochs,
        }
        for method, block in blocks.items()
    ]
    verdict = decide(entries, plain_accuracy, context.compress.max_accuracy_drop, target)
    return Outcome(
        blocks=blocks,
        skipped=skipped,
        lorita_latency=as_cpu_latency(times, "lorita:dense", "lorita"),
        verdict=verdict,
        models=models,
    )
