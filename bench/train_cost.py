"""Training cost of LoRITa: step time and peak memory of N=2, 3 relative to plain N=1.

All variants of one setting (same architecture, batch and device) live in one process
and are timed in interleaved rounds (for each round: for each variant: time k steps),
so a slowdown of the shared machine hits every variant alike; the reported ratio is the
median over rounds of (variant time / N=1 time in the same round).

Forward orders of the composed layers (core.layers): "chain" applies the N factors to
the activations, "product" multiplies the weights first, "hybrid" (N >= 3) merges the
square factors and applies that one, "auto" picks per layer from the input shape.
Every row has the wall-clock step time and the process's CPU time (all threads): on a
shared, busy machine the wall clock also counts time spent waiting for a core, the
CPU time much less so. Peak memory is measured in a fresh subprocess per variant:
sampled resident memory during two training steps on CPU, max_memory_allocated on CUDA.

    python -m bench.train_cost                 # CPU: FCN b128, VGG16 b32 and b128
    python -m bench.train_cost --device cuda   # adds VGG16 b512, eager and torch.compile
    python -m bench.train_cost --quick         # smoke run (seconds)
    python -m bench.train_cost --profile       # also time every VGG16 conv in every order
    python -m bench.train_cost --only vgg16-32px-b32 --rounds 8 --threads 1
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bench.common import command_line, machine_info, median, read_result, write_result
from core.factorize import factorize
from core.layers import FORWARD_ORDERS, ComposedConv2d, ComposedLinear
from core.models import build_model, default_exclude
from core.spec import TrainSpec
from core.train import build_optimizer

REPO_ROOT = Path(__file__).resolve().parents[1]
NUM_CLASSES = 10
# The reference recipe's optimizer; the step time barely depends on these values.
# glibc serves allocations above this size with mmap (returned to the system on free).
MMAP_THRESHOLD = 128 * 1024
OPTIMIZER = TrainSpec(optimizer="sgd", lr=0.01, momentum=0.9, weight_decay=5e-4)


@dataclass(frozen=True)
class Variant:
    factor: int
    order: str  # forward order of the composed layers ("-" for plain N=1)

    @property
    def label(self) -> str:
        return "N=1" if self.factor == 1 else f"N={self.factor} {self.order}"


@dataclass(frozen=True)
class Setting:
    name: str
    arch: str
    in_channels: int
    image_size: int
    batch: int
    compile: bool = False
    rounds: int = 5
    steps: int = 2  # training steps timed per variant per round


BASELINE = Variant(1, "-")
ORDERS_N2 = ("chain", "product", "auto")
# "hybrid" (square factors merged, then applied to the activations) needs N >= 3.
ORDERS_N3 = tuple(o for o in ("chain", "product", "hybrid", "auto") if o in FORWARD_ORDERS)
ALL_VARIANTS = [BASELINE] + [Variant(2, o) for o in ORDERS_N2] + [Variant(3, o) for o in ORDERS_N3]


def cpu_settings(quick: bool) -> list[Setting]:
    if quick:
        return [
            Setting("fcn-mnist-b128", "fcn", 1, 28, 128, rounds=2, steps=1),
            Setting("vgg11-32px-b8", "vgg11", 3, 32, 8, rounds=2, steps=1),
        ]
    return [
        Setting("fcn-mnist-b128", "fcn", 1, 28, 128, rounds=7, steps=5),
        Setting("vgg16-32px-b32", "vgg16", 3, 32, 32, rounds=5, steps=2),
        Setting("vgg16-32px-b128", "vgg16", 3, 32, 128, rounds=3, steps=1),
    ]


def cuda_settings(quick: bool) -> list[Setting]:
    if quick:
        return [Setting("vgg16-32px-b64-cuda", "vgg16", 3, 32, 64, rounds=2, steps=2)]
    return [
        Setting("fcn-mnist-b128-cuda", "fcn", 1, 28, 128, rounds=7, steps=20),
        Setting("vgg16-32px-b128-cuda", "vgg16", 3, 32, 128, rounds=7, steps=10),
        Setting("vgg16-32px-b512-cuda", "vgg16", 3, 32, 512, rounds=7, steps=10),
        Setting("vgg16-32px-b512-cuda-compile", "vgg16", 3, 32, 512, True, rounds=7, steps=10),
    ]


def build(setting: Setting, variant: Variant, device: torch.device) -> nn.Module:
    torch.manual_seed(0)
    model = build_model(setting.arch, NUM_CLASSES, setting.in_channels, setting.image_size)
    order = "auto" if variant.factor == 1 else variant.order
    model = factorize(
        model, variant.factor, exclude=default_exclude(setting.arch), forward_order=order
    )
    return model.to(device).train()


def batch_for(setting: Setting, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    shape = (setting.batch, setting.in_channels, setting.image_size, setting.image_size)
    inputs = torch.randn(shape, generator=generator)
    labels = torch.randint(0, NUM_CLASSES, (setting.batch,), generator=generator)
    return inputs.to(device), labels.to(device)


class Stepper:
    """One model + optimizer; ``run(k)`` does k full training steps."""

    def __init__(self, setting: Setting, variant: Variant, device: torch.device) -> None:
        self.device = device
        self.model = build(setting, variant, device)
        self.optimizer = build_optimizer(self.model, OPTIMIZER)
        self.step_model = torch.compile(self.model) if setting.compile else self.model
        self.inputs, self.labels = batch_for(setting, device)
        self.criterion = nn.CrossEntropyLoss()
        self.amp = device.type == "cuda"

    def run(self, steps: int) -> None:
        for _ in range(steps):
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.amp):
                loss = self.criterion(self.step_model(self.inputs).float(), self.labels)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
        _sync(self.device)

    def reset(self) -> None:
        """Drop gradients and optimizer state (as before the first step)."""
        self.optimizer.zero_grad(set_to_none=True)
        self.optimizer = build_optimizer(self.model, OPTIMIZER)

    def timed(self, steps: int) -> tuple[float, float]:
        """Seconds per step: (wall clock, CPU time of this process, all threads)."""
        started, cpu_started = time.perf_counter(), time.process_time()
        self.run(steps)
        return (
            (time.perf_counter() - started) / steps,
            (time.process_time() - cpu_started) / steps,
        )


def chosen_order(module: nn.Module, x: torch.Tensor) -> str:
    """The order a composed layer evaluates for input ``x``."""
    if hasattr(module, "chosen_order"):
        return module.chosen_order(x)
    return "product" if module.uses_product(x) else "chain"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def auto_choices(setting: Setting, factor: int, device: torch.device) -> list[dict[str, Any]]:
    """Which order "auto" takes in every composed layer at this batch size."""
    model = build(setting, Variant(factor, "auto"), device)
    found: list[dict[str, Any]] = []

    def record(module: nn.Module, args: tuple, name: str) -> None:
        x = args[0]
        if isinstance(module, ComposedConv2d):
            positions = module.output_positions(x)
            fan_in = module.in_channels * module.kernel_size[0] * module.kernel_size[1]
            shape = [module.out_channels, fan_in]
        else:
            positions = x.numel() // max(module.in_features, 1)
            shape = [module.out_features, module.in_features]
        found.append(
            {
                "layer": name,
                "shape": shape,
                "positions": int(positions),
                "order": chosen_order(module, x),
            }
        )

    hooks = [
        module.register_forward_pre_hook(lambda m, a, name=name: record(m, a, name))
        for name, module in model.named_modules()
        if isinstance(module, (ComposedConv2d, ComposedLinear))
    ]
    inputs, _ = batch_for(setting, device)
    with torch.no_grad():
        model(inputs)
    for hook in hooks:
        hook.remove()
    return found


def time_setting(setting: Setting, variants: list[Variant], device: torch.device) -> dict[str, Any]:
    """Interleaved rounds; each round starts one variant later than the one before, so
    no variant always runs right after the same neighbour (or always first)."""
    steppers = {v: Stepper(setting, v, device) for v in variants}
    for stepper in steppers.values():  # warm-up (and compilation)
        stepper.run(3 if setting.compile else 1)
    wall: dict[Variant, list[float]] = {v: [] for v in variants}
    cpu: dict[Variant, list[float]] = {v: [] for v in variants}
    loads = []
    for round_index in range(setting.rounds):
        loads.append(_load_1m())
        shift = round_index % len(variants)
        for variant in variants[shift:] + variants[:shift]:
            step_wall, step_cpu = steppers[variant].timed(setting.steps)
            wall[variant].append(step_wall)
            cpu[variant].append(step_cpu)
    loads.append(_load_1m())
    rows = []
    for variant in variants:
        rows.append(
            {
                "variant": variant.label,
                "factor": variant.factor,
                "order": variant.order,
                "step_ms_median": 1000 * median(wall[variant]),
                "step_ms_all": [round(1000 * t, 2) for t in wall[variant]],
                **_ratios(wall[variant], wall[BASELINE], "ratio_to_n1"),
                "cpu_ms_median": 1000 * median(cpu[variant]),
                "cpu_ms_all": [round(1000 * t, 2) for t in cpu[variant]],
                **_ratios(cpu[variant], cpu[BASELINE], "cpu_ratio_to_n1"),
            }
        )
    return {
        "setting": asdict(setting),
        "threads": torch.get_num_threads(),
        "load_average_1m_per_round": loads,
        "rows": rows,
    }


def _ratios(times: list[float], baseline: list[float], key: str) -> dict[str, float]:
    """Median and range over rounds of (variant / N=1 in the same round)."""
    ratios = [t / b for t, b in zip(times, baseline, strict=True)]
    return {f"{key}_median": median(ratios), f"{key}_min": min(ratios), f"{key}_max": max(ratios)}


def _load_1m() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def memory_text(row: dict[str, Any]) -> str:
    """The peak-memory column: MiB, "not measured" (--no-memory) or the child's error."""
    memory = row.get("peak_memory")
    if memory is None:
        return "not measured"
    if "peak_mib" not in memory:
        return "failed: " + " ".join(memory.get("error", ["unknown error"]))
    return f"{memory['peak_mib']:.0f} MiB"


def memory_child(setting: Setting, variant: Variant, device_name: str) -> dict[str, Any]:
    """Peak training memory of one variant (run in its own process)."""
    device = torch.device(device_name)
    stepper = Stepper(setting, variant, device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        stepper.run(2)
        peak = torch.cuda.max_memory_allocated(device) - before
        return {"peak_mib": peak / 2**20, "method": "torch.cuda.max_memory_allocated delta"}
    # One step first, so one-off library set-up is not counted; then gradients and
    # optimizer state are dropped and the resident size is sampled while two steps run.
    # The parent starts this process with large allocations served by mmap, so freed
    # memory goes back to the system and the resident size follows live tensors.
    stepper.run(1)
    stepper.reset()
    gc.collect()
    before = _resident_kib()
    peak = [before]
    running = threading.Event()
    running.set()

    def sample() -> None:
        while running.is_set():
            peak[0] = max(peak[0], _resident_kib())
            time.sleep(0.001)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stepper.run(2)
    running.clear()
    sampler.join()
    peak[0] = max(peak[0], _resident_kib())
    return {
        "peak_mib": (peak[0] - before) / 1024,
        "method": "sampled RSS during 2 steps minus RSS before (grads and optimizer state "
        "included)",
    }


def _resident_kib() -> int:
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * resource.getpagesize() // 1024


def measure_memory(setting: Setting, variant: Variant, device: str) -> dict[str, Any]:
    payload = json.dumps({"setting": asdict(setting), "variant": asdict(variant)})
    command = [sys.executable, "-m", "bench.train_cost", "--memory-child", payload]
    command += ["--device", device, "--threads", str(torch.get_num_threads())]
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(MMAP_THRESHOLD)}
    done = subprocess.run(
        command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=1200, check=False
    )
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1:] or [f"exit {done.returncode}"]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def profile_layers(setting: Setting, device: torch.device, rounds: int) -> list[dict[str, Any]]:
    """Forward+backward time of every conv of the model alone: plain and N=3 in each order.

    Tells whether the "auto" rule (which counts multiply-adds) picks the fastest order.
    """
    plain = build(setting, BASELINE, device)
    inputs_of: dict[str, torch.Tensor] = {}
    hooks = [
        module.register_forward_pre_hook(
            lambda m, a, name=name: inputs_of.__setitem__(name, a[0].detach())
        )
        for name, module in plain.named_modules()
        if isinstance(module, nn.Conv2d)
    ]
    inputs, _ = batch_for(setting, device)
    with torch.no_grad():
        plain(inputs)
    for hook in hooks:
        hook.remove()
    rows = []
    for name, x in inputs_of.items():
        dense = plain.get_submodule(name)
        layers: dict[str, nn.Module] = {"plain": dense}
        for order in ORDERS_N3:
            if order != "auto":
                layers[order] = ComposedConv2d.from_dense(dense, 3, order).to(device)
        x = x.clone().requires_grad_(True)
        times: dict[str, list[float]] = {k: [] for k in layers}
        for _ in range(rounds + 1):  # the first round is warm-up
            for key, layer in layers.items():
                started = time.perf_counter()
                layer(x).sum().backward()
                _sync(device)
                times[key].append(time.perf_counter() - started)
        ms = {k: 1000 * median(v[1:]) for k, v in times.items()}
        auto = ComposedConv2d.from_dense(dense, 3, "auto")
        orders = {k: v for k, v in ms.items() if k != "plain"}
        rows.append(
            {
                "layer": name,
                "c_in": dense.in_channels,
                "c_out": dense.out_channels,
                "positions": auto.output_positions(x),
                "auto_picks": chosen_order(auto, x),
                "fastest": min(orders, key=orders.get),
                **{f"{k}_ms": v for k, v in ms.items()},
            }
        )
    return rows


def mac_count(setting: Setting, factor: int = 3) -> dict[str, float]:
    """Multiply-adds of one forward pass of the composed layers against the plain ones:
    in the orders `auto` picks, and in the cheapest order for each layer (unweighted).

    Per layer the dense map costs positions x square x other; the extra of each order is
    `core.layers.order_extra_costs`, unweighted. The backward pass scales alike."""
    from core.layers import ComposedLayer, order_extra_costs

    model = build(setting, Variant(factor, "auto"), torch.device("cpu"))
    dense = chosen = cheapest = 0
    costs: list[tuple[int, dict[str, float], str]] = []

    def record(layer, inputs, _output) -> None:
        x = inputs[0]
        positions, (square, other) = layer.output_positions(x), layer.order_sizes
        extra = order_extra_costs(factor, positions, square, other)
        costs.append((positions * square * other, extra, layer.chosen_order(x)))

    hooks = [
        m.register_forward_hook(record) for m in model.modules() if isinstance(m, ComposedLayer)
    ]
    with torch.no_grad():
        model.eval()(batch_for(setting, torch.device("cpu"))[0])
    for hook in hooks:
        hook.remove()
    for layer_dense, extra, order in costs:
        dense += layer_dense
        chosen += extra[order]
        cheapest += min(extra.values())
    return {"auto": 1 + chosen / dense, "cheapest": 1 + cheapest / dense, "layers": len(costs)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--quick", action="store_true", help="tiny smoke run")
    parser.add_argument("--no-memory", action="store_true", help="skip the memory subprocesses")
    parser.add_argument("--profile", action="store_true", help="per-layer times of VGG16 b32")
    parser.add_argument("--only", default=None, help="run only settings whose name has this")
    parser.add_argument("--out", default="train_cost", help="results/<out>.json")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds per setting")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)"
    )
    parser.add_argument(
        "--merge",
        action="store_true",
        help="keep the other settings already in results/<out>.json (rerun a few settings)",
    )
    parser.add_argument(
        "--mac-count",
        action="store_true",
        help="print the composed layers' multiply-adds against N=1 (N=3; no timing)",
    )
    parser.add_argument("--memory-child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    if args.memory_child is not None:
        spec = json.loads(args.memory_child)
        result = memory_child(Setting(**spec["setting"]), Variant(**spec["variant"]), args.device)
        print(json.dumps(result))
        return 0

    device = torch.device(args.device)
    settings = cpu_settings(args.quick)
    if device.type == "cuda":
        settings = cuda_settings(args.quick)
    if args.only:
        settings = [s for s in settings if args.only in s.name]
    if args.rounds:
        settings = [replace(s, rounds=args.rounds) for s in settings]
    if args.mac_count:
        for setting in settings:
            counts = mac_count(setting)
            print(
                f"{setting.name}: N=3 multiply-adds x N=1 over {counts['layers']} composed "
                f"layers: {counts['auto']:.3f} in auto's orders, {counts['cheapest']:.3f} at best"
            )
        return 0
    result: dict[str, Any] = {
        "benchmark": "train_cost",
        "command": command_line(),
        "machine": machine_info(args.device),
        "quick": args.quick,
        "settings": [],
    }
    previous = read_result(args.out) if args.merge else None
    if previous:
        rerun = {s.name for s in settings}
        result["settings"] = [e for e in previous["settings"] if e["setting"]["name"] not in rerun]
        result["layer_profile"] = previous.get("layer_profile")
        result["earlier_commands"] = [previous["command"], *previous.get("earlier_commands", [])]
    if device.type != "cuda":
        result["cuda"] = (
            "not measured: no GPU in this run (python -m bench.train_cost --device cuda)"
        )
    for setting in settings:
        print(f"[train_cost] {setting.name}: timing {len(ALL_VARIANTS)} variants", flush=True)
        entry = time_setting(setting, ALL_VARIANTS, device)
        # Each setting says which machine timed it: a merge may join runs of two machines.
        entry["machine"] = result["machine"]
        entry["auto_choices"] = {f"N={n}": auto_choices(setting, n, device) for n in (2, 3)}
        if not args.no_memory:
            for row, variant in zip(entry["rows"], ALL_VARIANTS, strict=True):
                row["peak_memory"] = measure_memory(setting, variant, args.device)
        print(
            f"  {entry['threads']} threads, load average (1 min) per round: "
            f"{entry['load_average_1m_per_round']}",
            flush=True,
        )
        for row in entry["rows"]:
            print(
                f"  {row['variant']:<12} {row['step_ms_median']:9.1f} ms  "
                f"x{row['ratio_to_n1_median']:.2f} ({row['ratio_to_n1_min']:.2f}-"
                f"{row['ratio_to_n1_max']:.2f})  CPU {row['cpu_ms_median']:8.1f} ms  "
                f"x{row['cpu_ratio_to_n1_median']:.2f} ({row['cpu_ratio_to_n1_min']:.2f}-"
                f"{row['cpu_ratio_to_n1_max']:.2f})  mem {memory_text(row)}",
                flush=True,
            )
        result["settings"].append(entry)
        write_result(args.out, result)  # partial results survive an interrupted run
    if args.profile:
        setting = next(
            (s for s in settings if s.arch == "vgg16" and s.batch == 32),
            Setting("vgg16-32px-b32", "vgg16", 3, 32, 32),
        )
        print(f"[train_cost] per-layer profile of {setting.name}", flush=True)
        result["layer_profile"] = {
            "setting": asdict(setting),
            "rows": profile_layers(setting, device, rounds=2 if args.quick else 5),
        }
        for row in result["layer_profile"]["rows"]:
            times = " ".join(f"{k[:-3]} {v:.1f}" for k, v in row.items() if k.endswith("_ms"))
            print(
                f"  {row['layer']:<14} pos {row['positions']:>6} auto={row['auto_picks']:<8}"
                f" fastest={row['fastest']:<8} {times} ms",
                flush=True,
            )
    path = write_result(args.out, result)
    print(f"[train_cost] wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
