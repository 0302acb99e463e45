"""One compression job, end to end: the function the CLI and the worker call.

spec -> data -> model -> factorize (N maps per layer) -> train with weight decay ->
merge -> measure -> choose ranks on the validation split -> (fine-tune) -> measure
on the test split -> export artifacts. With `spec.comparisons` (`spec.baseline` is
["plain"]), one plain N=1 model is trained with the same recipe and every comparison
(core.peers.compare) starts from it.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from core.data.fetch import ensure_builtin
from core.devices import resolve_device
from core.events import EventSink, StopCheck, ignore_event, never_stop
from core.export import ARTIFACTS, DENSE_FILE, LOWRANK_FILE, save_artifacts, write_report
from core.factorize import merge
from core.int8_stage import int8_warnings, quantize_job, with_int8_artifact
from core.job.blocks import in_memory_size, rank_search_block
from core.job.progress import COMPARE_END, FINETUNE_END, RANKS_END, TRAIN_END, Progress
from core.job.stages import SPLIT_SEED, JobStages, excluded_layers
from core.model_card import write_model_card
from core.paths import default_data_dir
from core.peers.compare import CompareContext, Outcome, run_comparisons
from core.pretrained import (
    plain_truncation_point,
    prepare_user_model,
    pretrained_block,
)
from core.recipes import recipe_info, resolve_spec, starts_from_weights
from core.result import Result
from core.sanity import result_warnings
from core.spec import JobSpec


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


def _label_counts(dataset: Any, num_classes: int) -> list[int]:
    """Test samples per class (for the chance level of core.sanity)."""
    labels = dataset.tensors[1]
    return torch.bincount(labels.long().cpu(), minlength=num_classes).tolist()


def _compare(
    job: JobStages, plain_model: nn.Module, main: dict[str, Any], plain: dict[str, Any] | None
) -> Outcome:
    """The job's comparisons (core.peers.compare), all from the one trained N=1 model."""
    spec = job.spec
    context = CompareContext(
        splits=job.splits,
        train=spec.train,
        compress=spec.compress,
        device=job.device,
        input_shape=job.input_shape,
        names=main["names"],
        amp=job.amp,
        on_event=job.progress.forward,
        on_stage=lambda message, value: job.progress.stage("compare", message, value),
        should_stop=job.should_stop,
        span=(FINETUNE_END, COMPARE_END),
    )
    merged = plain["merged"] if plain is not None else merge(plain_model).to(job.device).eval()
    return run_comparisons(context, spec.comparisons, plain_merged=merged, lorita=main, plain=plain)


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
    weights_file: Path | None = None,
) -> Result:
    """Run a whole compression job; returns the Result (also written as report.json).

    `weights_file`: the file of `spec.model.weights` when the caller resolved it (the
    worker resolves upload:ID); the CLI's spec names the file itself."""
    device = resolve_device(device)
    out_dir = Path(out_dir)
    checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
    progress = Progress(on_event)
    timings: dict[str, float] = {"train": 0.0, "baseline": 0.0, "rank_search": 0.0}

    progress.stage("data", f"loading dataset {spec.data.dataset}", 0.0)
    if dataset_file is None:  # a built-in set this machine lacks is fetched first
        ensure_builtin(
            spec.data.dataset,
            data_dir or default_data_dir(),
            lambda message: progress.stage("data", message, 0.0),
        )
    splits = _load_splits(spec, data_dir, dataset_file)
    spec = resolve_spec(spec, splits, device=device)
    job = JobStages(spec, splits, device, progress, should_stop, checkpoint_dir)
    factor = spec.lorita.factor
    user_reference = None
    if starts_from_weights(spec):
        progress.stage("train", f"loading and measuring your {spec.model.arch} weights", 0.0)
        job.user_model, user_reference = prepare_user_model(
            spec,
            splits,
            weights_file,
            exclude=excluded_layers(spec),
            input_shape=job.input_shape,
            device=device,
            amp=job.amp,
        )

    # One N=1 model serves every comparison (`baseline: true` is comparisons ["plain"]).
    trains_plain = bool(spec.comparisons)
    runs_plain_search = "plain" in spec.comparisons
    train_span = (0.0, TRAIN_END / 2 if trains_plain else TRAIN_END)
    started = time.monotonic()
    model, history = job.train(factor, "lorita", train_span)
    timings["train"] = time.monotonic() - started

    baseline_model = None
    if trains_plain:
        started = time.monotonic()
        baseline_model, baseline_history = job.train(1, "baseline", (TRAIN_END / 2, TRAIN_END))
        timings["baseline"] = time.monotonic() - started

    search_end = RANKS_END if not runs_plain_search else (TRAIN_END + RANKS_END) / 2
    main = job.compress(model, "lorita", (TRAIN_END, search_end))
    timings["rank_search"] = main["rank_search"]["time_s"]

    pretrained = None
    if job.user_model is not None:
        progress.stage("rank_search", "truncating your model as uploaded", search_end)
        truncation = plain_truncation_point(job, main["names"], main["choice"])
        pretrained = pretrained_block(spec.model.weights, user_reference, truncation)

    baseline_block = baseline = None
    if runs_plain_search:
        baseline = job.compress(baseline_model, "baseline", (search_end, RANKS_END))
        timings["rank_search"] += baseline["rank_search"]["time_s"]
        baseline_block = rank_search_block(
            baseline,
            baseline_history,
            {
                "uncompressed": in_memory_size(baseline["merged"]),
                "compressed": in_memory_size(baseline["lowrank"]),
            },
        )

    compared = None
    if trains_plain:
        started = time.monotonic()
        compared = _compare(job, baseline_model, main, baseline)
        timings["compare"] = time.monotonic() - started

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
        extra_metadata={"factor": factor},
        input_contract=splits.input_contract,
        model_info={
            "test_accuracy": main["accuracy"]["compressed"],
            "val_accuracy": main["val_accuracy"]["compressed"],
            "spec": spec.model_dump(mode="json"),
        },
    )
    timings["export"] = time.monotonic() - started

    int8 = None
    if spec.compress.quantize == "int8":
        started = time.monotonic()
        int8 = quantize_job(
            spec,
            splits,
            out_dir,
            main["merged"],
            split_seed=SPLIT_SEED,
            data_dir=data_dir,
            dataset_file=dataset_file,
            on_stage=lambda message: progress.stage("quantize", message, COMPARE_END),
        )
        timings["quantize"] = time.monotonic() - started

    main_block = rank_search_block(
        main, history, {"uncompressed": sizes[DENSE_FILE], "compressed": sizes[LOWRANK_FILE]}
    )
    if compared is not None:
        main_block.latency_cpu = compared.lorita_latency
    result = Result(
        **dict(main_block),
        artifacts=with_int8_artifact(list(ARTIFACTS)) if int8 else list(ARTIFACTS),
        spec=spec.model_dump(mode="json"),
        device=device,
        factor=factor,
        timings_s=timings,
        baseline=baseline_block,
        comparisons=compared.blocks or None if compared else None,
        comparisons_skipped=compared.skipped or None if compared else None,
        verdict=compared.verdict if compared else None,
        pretrained=pretrained,
        recipe=recipe_info(spec),
        input_contract=splits.input_contract,
        int8=int8,
    )
    result.warnings = result_warnings(result, _label_counts(splits.test, spec.model.num_classes))
    result.warnings = [*(result.warnings or []), *int8_warnings(int8)] or None
    write_report(out_dir, result)
    write_model_card(out_dir, result)
    progress.stage("done", "finished", 1.0)
    progress.forward({"type": "result", "result": result.model_dump(mode="json")})
    return result
