"""Compression time: merge + SVD + rank search (accuracy strategy, no fine-tuning).

For each model, a LoRITa (N=3) model is trained for a few steps (so its accuracy and
spectra are not those of random weights; the time of this warm-up is not counted),
then the product's own functions are timed on the product's default validation split
(10% of the training set: 6,000 real images for MNIST / Fashion-MNIST):

- merge:       core.factorize.merge (factors multiplied back into dense layers);
- svd:         core.ranks.RankProblem (copy of the model + SVD of every weight layer);
- rank search: core.ranks.choose_ranks with strategy "accuracy" (SVD again, then the
               budget-family search on a validation subset and full-split checks).

Wall time and process CPU time are both reported: on a shared machine the wall time
grows with other processes' load, the CPU time much less.

    python -m bench.compress_time            # FCN, VGG16, ResNet20 (+ VGG16 on 3x32x32)
    python -m bench.compress_time --quick    # smoke run
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import torch
from torch.utils.data import TensorDataset

from bench.common import command_line, machine_info, write_result
from core.batching import Batches
from core.data import load_dataset
from core.factorize import eligible_layers, factorize, merge
from core.measure import count_flops, count_params, evaluate
from core.models import build_model, default_exclude
from core.ranks import RankProblem, choose_ranks
from core.spec import CompressSpec, TrainSpec
from core.train import build_optimizer

FACTOR = 3
TARGET_S = 60.0  # the target for VGG16 on CPU

# (name, arch, dataset, 3x32x32 copy of the images, warm-up training steps)
SETTINGS = [
    ("fcn-mnist", "fcn", "mnist", False, 150),
    ("vgg16-fashion-28px", "vgg16", "fashion-mnist", False, 60),
    ("resnet20-fashion-28px", "resnet20", "fashion-mnist", False, 60),
    ("vgg16-fashion-3x32px", "vgg16", "fashion-mnist", True, 60),
]


def as_cifar_shaped(dataset: TensorDataset) -> TensorDataset:
    """Real images in CIFAR's shape: padded to 32x32 and repeated over 3 channels."""
    x, y = dataset.tensors
    x = torch.nn.functional.pad(x, (2, 2, 2, 2)).repeat(1, 3, 1, 1)
    return TensorDataset(x.contiguous(), y)


def warm_up(model: torch.nn.Module, train: TensorDataset, steps: int) -> None:
    """A few SGD steps so accuracy and spectra are those of a (briefly) trained model."""
    spec = TrainSpec(optimizer="sgd", lr=0.02, momentum=0.9, weight_decay=5e-4)
    optimizer = build_optimizer(model, spec)
    batches = Batches(train, 64, "cpu", shuffle=True, seed=0)
    model.train()
    step = 0
    while step < steps:
        for inputs, labels in batches:
            loss = torch.nn.functional.cross_entropy(model(inputs), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            if step >= steps:
                break
    model.eval()


class Clock:
    """Wall and process CPU seconds of a block."""

    def __enter__(self) -> Clock:
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc) -> None:
        self.wall = time.perf_counter() - self.wall
        self.cpu = time.process_time() - self.cpu


def svd_thread_probe(merged: torch.nn.Module, names: list[str]) -> dict[str, Any]:
    """SVD of every layer's weight (float64, as core.ranks does) with the default thread
    count and with one thread: small SVDs lose badly to thread spinning on a busy CPU."""
    from core.lowrank import weight_matrix

    matrices = [weight_matrix(merged.get_submodule(n)).detach().to(torch.float64) for n in names]
    threads = torch.get_num_threads()
    out: dict[str, Any] = {}
    for count in (threads, 1):
        torch.set_num_threads(count)
        with Clock() as clock:
            for matrix in matrices:
                torch.linalg.svd(matrix, full_matrices=False)
        out[f"threads_{count}"] = {"wall_s": clock.wall, "cpu_s": clock.cpu}
    torch.set_num_threads(threads)
    return out


def run_setting(
    name: str, arch: str, dataset: str, cifar_shaped: bool, steps: int, quick: bool
) -> dict[str, Any]:
    splits = load_dataset(dataset, val_fraction=0.1, seed=0)
    train, val = splits.train, splits.val
    channels, size = splits.in_channels, splits.image_size
    if cifar_shaped:
        train, val = as_cifar_shaped(train), as_cifar_shaped(val)
        channels, size = 3, 32
    if quick:
        val = TensorDataset(*(t[:600] for t in val.tensors))
        steps = min(steps, 5)
    input_shape = (channels, size, size)
    torch.manual_seed(0)
    model = build_model(arch, splits.num_classes, channels, size)
    model = factorize(model, FACTOR, exclude=default_exclude(arch))
    warm_up(model, train, steps)

    with Clock() as merge_clock:
        merged = merge(model).eval()
    names = eligible_layers(merged, exclude=default_exclude(arch))
    params, flops = count_params(merged), count_flops(merged, input_shape)
    with Clock() as svd_clock:
        RankProblem(merged, names, input_shape, total_params=params, total_flops=flops)
    compress = CompressSpec(strategy="accuracy", max_accuracy_drop=0.01)
    with Clock() as search_clock:
        choice = choose_ranks(
            merged,
            names,
            compress,
            val_dataset=val,
            input_shape=input_shape,
            device="cpu",
            total_params=params,
            total_flops=flops,
        )
    probe = svd_thread_probe(merged, names)
    # One full pass over the validation split, as a unit to compare the search with.
    with Clock() as eval_clock:
        evaluate(merged, Batches(val, 1024, "cpu"))
    total = merge_clock.wall + search_clock.wall
    return {
        "name": name,
        "arch": arch,
        "dataset": dataset + (" padded to 3x32x32" if cifar_shaped else ""),
        "input_shape": list(input_shape),
        "factor": FACTOR,
        "warmup_train_steps": steps,
        "layers": len(names),
        "params": params,
        "flops": flops,
        "val_images": len(val),
        "reference_val_accuracy": choice.reference_val_accuracy,
        "chosen_val_accuracy": choice.val_accuracy,
        "params_kept": choice.params_kept,
        "flops_kept": choice.flops_kept,
        "evaluations": choice.search.get("evaluations"),
        "search_subset_images": choice.search.get("val_samples"),
        "merge_s": merge_clock.wall,
        "svd_s": svd_clock.wall,
        "rank_search_s": search_clock.wall,
        "rank_search_cpu_s": search_clock.cpu,
        "total_s": total,
        "one_val_pass_s": eval_clock.wall,
        "target_s": TARGET_S if arch == "vgg16" else None,
        "svd_thread_probe": probe,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run on 600 val images")
    parser.add_argument("--only", default=None, help="run only settings whose name has this")
    parser.add_argument("--out", default="compress_time", help="results/<out>.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(min(2, torch.get_num_threads()))

    result: dict[str, Any] = {
        "benchmark": "compress_time",
        "command": command_line(),
        "machine": machine_info("cpu"),
        "quick": args.quick,
        "strategy": "accuracy, max_accuracy_drop 0.01, target params, no fine-tuning",
        "gpu": "not measured: no GPU in this run",
        "rows": [],
    }
    settings = [s for s in SETTINGS if args.only is None or args.only in s[0]]
    for name, arch, dataset, cifar_shaped, steps in settings:
        print(f"[compress_time] {name}", flush=True)
        row = run_setting(name, arch, dataset, cifar_shaped, steps, args.quick)
        row["load_average_1m_after"] = machine_info("cpu")["load_average_1m"]
        result["rows"].append(row)
        print(
            f"  merge {row['merge_s']:.2f}s  svd {row['svd_s']:.2f}s  search "
            f"{row['rank_search_s']:.1f}s (cpu {row['rank_search_cpu_s']:.1f}s, "
            f"{row['evaluations']} evals)  one val pass {row['one_val_pass_s']:.1f}s  "
            f"params kept {row['params_kept']:.3f}  svd probe {row['svd_thread_probe']}",
            flush=True,
        )
        write_result(args.out, result)
    print(f"[compress_time] wrote {write_result(args.out, result)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
