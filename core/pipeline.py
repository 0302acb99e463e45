"""One compression job, end to end: the function the CLI and the worker call.

spec -> data -> model -> factorize (N maps per layer) -> train with weight decay ->
merge -> measure -> choose ranks on the validation split -> (fine-tune) -> measure
on the test split -> export artifacts. With `spec.baseline`, a plain N=1 model is
trained with the same recipe and compressed with the same strategy, for comparison.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save as safetensors_bytes
from torch import nn

from core.devices import resolve_device
from core.errors import DataError, SpecError
from core.events import EventSink, StopCheck, ignore_event, never_stop
from core.export import ARTIFACTS, DENSE_FILE, LOWRANK_FILE, save_artifacts, write_report
from core.factorize import eligible_layers, factorize, merge
from core.lowrank import (
    LOWRANK_TYPES,
    dense_from_lowrank,
    singular_values,
    to_lowrank,
    truncate,
    weight_matrix,
)
from core.measure import count_flops, count_params, evaluate, measure_latency_ms
from core.ranks import RankChoice, choose_ranks
from core.recipes import resolve_spec
from core.result import RankSearchBlock, Result
from core.spec import JobSpec
from core.train import seed_everything, train_model

# Share of the job's progress bar each phase gets (training dominates the time).
TRAIN_END = 0.75
RANKS_END = 0.85
FINETUNE_END = 0.92
# The data split is a property of the dataset, not of a run: the same for every seed.
SPLIT_SEED = 0
FINETUNE_LR_SCALE = 0.1


class _Progress:
    """Stage events with a progress value that never goes backwards."""

    def __init__(self, sink: EventSink) -> None:
        self.sink = sink
        self.value = 0.0

    def stage(self, stage: str, message: str, progress: float) -> None:
        self.value = max(self.value, min(1.0, progress))
        self.sink({"type": "stage", "stage": stage, "message": message, "progress": self.value})

    def forward(self, event: dict[str, Any]) -> None:
        if "progress" in event:
            self.value = max(self.value, event["progress"])
            event = {**event, "progress": self.value}
        self.sink(event)


def _load_splits(spec: JobSpec, data_dir: Path | None, dataset_file: Path | None):
    from core.data import load_dataset

    return load_dataset(
        spec.data.dataset,
        data_dir,
        file=dataset_file,
        val_fraction=spec.data.val_fraction,
        seed=SPLIT_SEED,
        train_subset=spec.data.train_subset,
    )


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


def _exclude(spec: JobSpec) -> list[str]:
    from core.models import default_exclude

    return list(default_exclude(spec.model.arch)) + list(spec.lorita.exclude or [])


def _build(spec: JobSpec, factor: int, seed: int) -> nn.Module:
    from core.models import build_model

    seed_everything(seed)
    model = build_model(
        spec.model.arch, spec.model.num_classes, spec.model.in_channels, spec.model.image_size
    )
    return factorize(
        model,
        factor,
        include=spec.lorita.include,
        exclude=_exclude(spec),
        forward_order=spec.lorita.forward_order,
        inplace=True,
    )


def _layers_report(
    merged: nn.Module,
    names: list[str],
    ranks: dict[str, int],
    lowrank: nn.Module,
    spectra: dict[str, torch.Tensor] | None = None,
) -> dict[str, Any]:
    if not spectra or set(spectra) != set(names):
        spectra = singular_values(merged, names)
    split = {name for name, m in lowrank.named_modules() if isinstance(m, LOWRANK_TYPES)}
    report = {}
    for name in names:
        m, n = weight_matrix(merged.get_submodule(name)).shape
        report[name] = {
            "shape": [int(m), int(n)],
            "full_rank": int(min(m, n)),
            "rank": int(ranks[name]),
            "factorized": name in split,
            "singular_values": [float(v) for v in spectra[name]],
        }
    return report


class _Job:
    def __init__(
        self,
        spec: JobSpec,
        splits: Any,
        device: str,
        progress: _Progress,
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
        self.tag = (
            f"{spec.data.dataset}|{spec.data.val_fraction}|{spec.data.train_subset}|{SPLIT_SEED}"
        )

    def train(self, factor: int, run: str, span: tuple[float, float]) -> tuple[nn.Module, list]:
        model = _build(self.spec, factor, self.spec.train.seed)
        _check_forward(model, self.splits, self.spec)
        checkpoint = self.checkpoint_dir / f"{run}.pt" if self.checkpoint_dir else None
        self.progress.stage(
            "train" if run == "lorita" else "baseline",
            f"training {self.spec.model.arch} with N={factor} "
            f"for {self.spec.train.epochs} epochs on {self.device}",
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
        names = eligible_layers(merged, include=spec.lorita.include, exclude=_exclude(spec))
        if not names:
            raise SpecError(
                "no layer is eligible for compression; check lorita.include / lorita.exclude"
            )
        started = time.monotonic()
        params, flops = count_params(merged), count_flops(merged, self.input_shape)
        low, high = search_span

        def on_search(fraction: float, message: str) -> None:
            self.progress.stage("rank_search", f"{run}: {message}", low + (high - low) * fraction)

        on_search(0.0, "choosing ranks on the validation split")
        choice: RankChoice = choose_ranks(
            merged,
            names,
            spec.compress,
            val_dataset=self.splits.val,
            input_shape=self.input_shape,
            device=device,
            amp=self.amp,
            channels_last=False,
            total_params=params,
            total_flops=flops,
            should_stop=self.should_stop,
            on_progress=on_search,
        )
        search_time = time.monotonic() - started
        ranks = choice.ranks
        lowrank = to_lowrank(merged, ranks).to(device).eval()
        truncated = truncate(merged, ranks).to(device).eval()
        chosen_test = evaluate(lowrank, self.splits.test, device, amp=self.amp).accuracy
        history: list = []
        if spec.compress.finetune_epochs > 0:
            lowrank, truncated, history = self._finetune(lowrank, merged, run)
        block = {
            "merged": merged,
            "lowrank": lowrank,
            "truncated": truncated,
            "names": names,
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
            "curve": _curve_with_test(choice, chosen_test),
            "chosen": {"params_kept": choice.params_kept, "flops_kept": choice.flops_kept},
            "rank_search": {**choice.search, "time_s": search_time},
            "finetune_history": history,
        }
        return block

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

    def _finetune(
        self, lowrank: nn.Module, merged: nn.Module, run: str
    ) -> tuple[nn.Module, nn.Module, list]:
        spec = self.spec
        recipe = spec.train.model_copy(
            update={
                "epochs": spec.compress.finetune_epochs,
                "lr": spec.train.lr * FINETUNE_LR_SCALE,
                "compile": False,
                "channels_last": False,
            }
        )
        self.progress.stage("finetune", f"fine-tuning the compressed {run} model", RANKS_END)
        history = train_model(
            lowrank,
            self.splits,
            recipe,
            device=self.device,
            run="finetune",
            on_event=self.progress.forward,
            should_stop=self.should_stop,
            progress_span=(RANKS_END, FINETUNE_END),
        )
        lowrank.eval()
        return lowrank, dense_from_lowrank(lowrank, merged).eval(), history


def _curve_with_test(choice: RankChoice, chosen_test: float) -> list[dict[str, Any]]:
    """The search curve with test accuracy filled in for the chosen point only."""
    curve = [{**point, "test_accuracy": None} for point in choice.curve]
    for point in curve:
        if (
            abs(point["params_kept"] - choice.params_kept) < 1e-12
            and abs(point["flops_kept"] - choice.flops_kept) < 1e-12
        ):
            point["test_accuracy"] = chosen_test
            break
    else:
        curve.append({**choice.chosen, "test_accuracy": chosen_test})
        curve.sort(key=lambda point: -point["params_kept"])
    return curve


def _in_memory_size(model: nn.Module) -> int:
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    return len(safetensors_bytes(tensors))


def _rank_search_block(
    compressed: dict[str, Any], history: list, file_size_bytes: dict[str, int]
) -> RankSearchBlock:
    """The Result block of one trained and compressed model (the LoRITa one or the N=1
    baseline): the same function for both, so their blocks cannot drift apart."""
    return RankSearchBlock(
        accuracy=compressed["accuracy"],
        params=compressed["params"],
        flops=compressed["flops"],
        latency_ms=compressed["latency_ms"],
        file_size_bytes=file_size_bytes,
        curve=compressed["curve"],
        val_accuracy=compressed["val_accuracy"],
        ranks=compressed["ranks"],
        chosen=compressed["chosen"],
        layers=_layers_report(
            compressed["merged"],
            compressed["names"],
            compressed["ranks"],
            compressed["lowrank"],
            compressed["choice"].spectra,
        ),
        history=history,
        rank_search=compressed["rank_search"],
        finetune_history=compressed["finetune_history"] or None,
    )


def run_job(
    spec: JobSpec,
    out_dir: Path,
    *,
    data_dir: Path | None = None,
    dataset_file: Path | None = None,
    device: str | None = None,
    on_event: EventSink = ignore_event,
    should_stop: StopCheck = never_stop,
    checkpoint_dir: Path | None = None,
) -> Result:
    """Run a whole compression job; returns the Result (also written as report.json)."""
    device = resolve_device(device)
    out_dir = Path(out_dir)
    checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
    progress = _Progress(on_event)
    timings: dict[str, float] = {"train": 0.0, "baseline": 0.0, "rank_search": 0.0}

    progress.stage("train", f"loading dataset {spec.data.dataset}", 0.0)
    splits = _load_splits(spec, data_dir, dataset_file)
    spec = resolve_spec(spec, splits, device=device)
    job = _Job(spec, splits, device, progress, should_stop, checkpoint_dir)
    factor = spec.lorita.factor

    train_span = (0.0, TRAIN_END / 2 if spec.baseline else TRAIN_END)
    started = time.monotonic()
    model, history = job.train(factor, "lorita", train_span)
    timings["train"] = time.monotonic() - started

    baseline_model = None
    if spec.baseline:
        started = time.monotonic()
        baseline_model, baseline_history = job.train(1, "baseline", (TRAIN_END / 2, TRAIN_END))
        timings["baseline"] = time.monotonic() - started

    search_end = RANKS_END if not spec.baseline else (TRAIN_END + RANKS_END) / 2
    main = job.compress(model, "lorita", (TRAIN_END, search_end))
    timings["rank_search"] = main["rank_search"]["time_s"]

    baseline_block = None
    if baseline_model is not None:
        baseline = job.compress(baseline_model, "baseline", (search_end, RANKS_END))
        timings["rank_search"] += baseline["rank_search"]["time_s"]
        baseline_block = _rank_search_block(
            baseline,
            baseline_history,
            {
                "uncompressed": _in_memory_size(baseline["merged"]),
                "compressed": _in_memory_size(baseline["lowrank"]),
            },
        )

    progress.stage(
        "export", "writing model.safetensors, lowrank.safetensors and model.onnx", FINETUNE_END
    )
    started = time.monotonic()
    sizes = save_artifacts(
        out_dir,
        dense_model=main["truncated"],
        lowrank_model=main["lowrank"],
        arch=spec.model.arch,
        num_classes=spec.model.num_classes,
        in_channels=spec.model.in_channels,
        image_size=spec.model.image_size,
        extra_metadata={
            "normalize": {"mean": list(splits.channel_mean), "std": list(splits.channel_std)},
            "factor": factor,
        },
    )
    timings["export"] = time.monotonic() - started

    main_block = _rank_search_block(
        main, history, {"uncompressed": sizes[DENSE_FILE], "compressed": sizes[LOWRANK_FILE]}
    )
    result = Result(
        **dict(main_block),
        artifacts=list(ARTIFACTS),
        spec=spec.model_dump(mode="json"),
        device=device,
        factor=factor,
        timings_s=timings,
        baseline=baseline_block,
    )
    write_report(out_dir, result)
    progress.stage("done", "finished", 1.0)
    progress.forward({"type": "result", "result": result.model_dump(mode="json")})
    return result
