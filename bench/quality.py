"""Compression quality: LoRITa (N=2, 3) against plain training (N=1) and N=1 + fine-tuning.

For every setting each factor N is trained with the product's recipe (core.recipes via
core.recipes.resolve_spec) and the same seed, merged, and its rank budget swept along
the product's budget family (core.ranks.BudgetFamily, params target): at every kept
share the truncated model is scored on the validation split and on the test split.

Tolerance table: with the reference R = the best N=1 uncompressed accuracy of the
setting, the params / FLOPs drop at tolerance t is that of the most compressed sweep
point whose *validation* accuracy is >= R_val - t (chosen on validation, as the
product does; its test accuracy is reported next to it). The same on the test curve is
stored as "test_curve" for reference.

N=1 + fine-tuning: the N=1 model truncated at a few kept shares (those the best LoRITa
model reached at the tolerances, and half of them), each turned into its two-layer
low-rank form and fine-tuned for ``finetune_epochs`` with the product's fine-tuning
recipe (lr x core.job.stages.FINETUNE_LR_SCALE), then scored like the sweep points.

Runs are shortened for a CPU (few epochs, training subsets): each setting states its
epochs and subset. Results go to results/quality_<setting>.json after every run, and
trained weights are cached in --work-dir so a rerun only evaluates.

    python -m bench.quality                      # all settings, in order
    python -m bench.quality --only fcn-mnist     # one setting
    python -m bench.quality --quick              # smoke run on digits (about a minute)
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from bench.common import command_line, machine_info, write_result
from core.batching import Batches
from core.data import load_dataset
from core.factorize import eligible_layers, factorize, merge
from core.job.stages import FINETUNE_LR_SCALE, SPLIT_SEED
from core.lowrank import to_lowrank
from core.measure import count_flops, count_params, evaluate
from core.models import build_model, default_exclude
from core.ranks import BudgetFamily, RankProblem
from core.recipes import resolve_spec
from core.result import CurvePoint
from core.spec import JobSpec
from core.tolerance import within_drop
from core.train import seed_everything, train_model

TOLERANCES = (0.005, 0.01)
# Kept shares of parameters swept (1.0 = uncompressed); geometric, ratio ~0.8.
SWEEP = tuple(round(0.8**k, 4) for k in range(0, 21))
EVAL_BATCH = 1024


@dataclass
class QualitySetting:
    name: str
    arch: str
    dataset: str
    epochs: int
    train_subset: int | None
    weight_decays: tuple[float, ...]
    factors: tuple[int, ...] = (1, 2, 3)
    test_limit: int | None = None  # score sweep points on this many test images
    finetune_epochs: int = 1
    finetune_points: int = 3  # kept shares fine-tuned (each costs finetune_epochs)
    sweep: tuple[float, ...] = SWEEP
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def settings(quick: bool) -> list[QualitySetting]:
    if quick:
        return [
            QualitySetting("quick-fcn-digits", "fcn", "digits", 2, None, (1e-4,), sweep=SWEEP[::4])
        ]
    return [
        # Weight-decay grid on the FCN (Adam: L2 penalty in the loss on every factor).
        QualitySetting("fcn-mnist", "fcn", "mnist", 4, 20_000, (1e-5, 1e-4, 1e-3)),
        # The CNNs cost ~10x the FCN per image on this CPU: N=1 against N=3 only, a
        # coarser sweep scored on 2,000 test images, and two fine-tuned points.
        *(
            QualitySetting(
                f"{arch}-fashion",
                arch,
                "fashion-mnist",
                3,
                8_000,
                (5e-4,),
                factors=(1, 3),
                test_limit=2_000,
                finetune_points=2,
                sweep=SWEEP[::2],
            )
            for arch in ("vgg11", "resnet20")
        ),
        QualitySetting(
            "simplevit-fashion", "simplevit", "fashion-mnist", 4, 10_000, (5e-2,), test_limit=3_000
        ),
    ]


def resolved_spec(setting: QualitySetting, splits: Any, factor: int, wd: float) -> JobSpec:
    spec = JobSpec.model_validate(
        {
            "model": {"arch": setting.arch},
            "data": {"dataset": setting.dataset, "train_subset": setting.train_subset},
            "lorita": {"factor": factor},
            "train": {"epochs": setting.epochs, "weight_decay": wd, "seed": 0},
        }
    )
    return resolve_spec(spec, splits, device="cpu")


def build_factorized(spec: JobSpec) -> nn.Module:
    """The model exactly as core.pipeline builds it (same seed, same exclusions)."""
    seed_everything(spec.train.seed)
    model = build_model(
        spec.model.arch, spec.model.num_classes, spec.model.in_channels, spec.model.image_size
    )
    return factorize(
        model, spec.lorita.factor, exclude=default_exclude(spec.model.arch), inplace=True
    )


def accuracy(model: nn.Module, batches: Batches) -> float:
    return evaluate(model, batches).accuracy


class Evaluation:
    """Validation and (possibly capped) test batches of a setting."""

    def __init__(self, splits: Any, test_limit: int | None) -> None:
        self.val = Batches(splits.val, EVAL_BATCH, "cpu")
        self.test = Batches(splits.test, EVAL_BATCH, "cpu", limit=test_limit)

    def score(self, model: nn.Module) -> dict[str, float]:
        return {
            "val_accuracy": accuracy(model, self.val),
            "test_accuracy": accuracy(model, self.test),
        }


def sweep(
    merged: nn.Module,
    names: list[str],
    input_shape: tuple[int, ...],
    setting: QualitySetting,
    evaluation: Evaluation,
) -> tuple[list[dict[str, Any]], RankProblem, BudgetFamily]:
    """Accuracy along the budget family, from uncompressed down to the smallest share."""
    problem = RankProblem(merged, names, input_shape)
    family = BudgetFamily(problem, "params")
    curve, seen = [], set()
    for share in setting.sweep:
        removed = family.removals_for(share)
        if removed in seen:
            continue
        seen.add(removed)
        ranks = family.ranks_after(removed)
        params_kept, flops_kept = problem.kept(ranks)
        problem.set_ranks(ranks)
        # The Result's own curve point (same keys as a job's curve), plus the share asked.
        point = CurvePoint(
            params_kept=params_kept, flops_kept=flops_kept, **evaluation.score(problem.model)
        )
        curve.append({"share": share, **point.model_dump()})
        if removed >= family.removable:
            break
    return curve, problem, family


def drop_at(curve: list[dict[str, Any]], floor: float, key: str) -> dict[str, Any] | None:
    """The most compressed point with ``key`` accuracy >= floor (None if none is)."""
    passing = [p for p in curve if within_drop(floor - p[key], 0.0)]
    if not passing:
        return None
    best = min(passing, key=lambda p: (p["params_kept"], p["flops_kept"]))
    return {
        "params_drop": 1.0 - best["params_kept"],
        "flops_drop": 1.0 - best["flops_kept"],
        "params_kept": best["params_kept"],
        "val_accuracy": best["val_accuracy"],
        "test_accuracy": best["test_accuracy"],
    }


def tolerance_summary(curve: list[dict[str, Any]], reference: dict[str, float]) -> dict[str, Any]:
    out = {}
    for tol in TOLERANCES:
        out[str(tol)] = {
            "selected_on_val": drop_at(curve, reference["val_accuracy"] - tol, "val_accuracy"),
            "test_curve": drop_at(curve, reference["test_accuracy"] - tol, "test_accuracy"),
        }
    return out


class BenchRun:
    """One setting's run: its cache folder, its splits (the job's split seed), the
    evaluation and the head of its result file. A setting names ``name``, ``dataset``,
    ``train_subset`` and ``test_limit``."""

    benchmark = ""

    def __init__(self, setting: Any, work_dir: Path, quick: bool) -> None:
        self.setting = setting
        self.work_dir = work_dir / setting.name
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.splits = load_dataset(
            setting.dataset, val_fraction=0.1, seed=SPLIT_SEED, train_subset=setting.train_subset
        )
        self.evaluation = Evaluation(self.splits, setting.test_limit)
        self.result: dict[str, Any] = {
            "benchmark": self.benchmark,
            "command": command_line(),
            "machine": machine_info("cpu"),
            "quick": quick,
            "setting": asdict(setting),
            "data": {
                "train": len(self.splits.train),
                "val": len(self.splits.val),
                "test_scored": self.evaluation.test.count,
            },
            "runs": [],
        }


class SettingRun(BenchRun):
    benchmark = "quality"

    def __init__(self, setting: QualitySetting, work_dir: Path, quick: bool) -> None:
        super().__init__(setting, work_dir, quick)
        self.merged: dict[tuple[int, float], nn.Module] = {}
        self.specs: dict[tuple[int, float], JobSpec] = {}

    def save(self) -> None:
        write_result(f"quality_{self.setting.name}", self.result)

    def train_one(self, factor: int, wd: float) -> None:
        spec = resolved_spec(self.setting, self.splits, factor, wd)
        model = build_factorized(spec)
        checkpoint = self.work_dir / f"n{factor}_wd{wd:g}.pt"
        started = time.monotonic()
        history = train_model(
            model, self.splits, spec.train, device="cpu", run="lorita", checkpoint_path=checkpoint
        )
        # Summed epoch times survive a resumed run (a rerun from the cache trains nothing).
        train_s = sum(e.get("epoch_time_s", 0.0) for e in history) or time.monotonic() - started
        merged = merge(model).eval()
        names = eligible_layers(merged, exclude=default_exclude(spec.model.arch))
        input_shape = (spec.model.in_channels, spec.model.image_size, spec.model.image_size)
        started = time.monotonic()
        curve, problem, _ = sweep(merged, names, input_shape, self.setting, self.evaluation)
        self.merged[(factor, wd)] = merged
        self.specs[(factor, wd)] = spec
        self.result["runs"].append(
            {
                "factor": factor,
                "weight_decay": wd,
                "epochs": spec.train.epochs,
                "train_subset": self.setting.train_subset,
                "recipe": spec.train.model_dump(mode="json"),
                "train_s": train_s,
                "sweep_s": time.monotonic() - started,
                "final_epoch": history[-1] if history else None,
                "params": problem.total_params,
                "flops": problem.total_flops,
                "uncompressed": {k: curve[0][k] for k in ("val_accuracy", "test_accuracy")},
                "curve": curve,
            }
        )
        print(
            f"[quality] {self.setting.name} N={factor} wd={wd:g}: test "
            f"{curve[0]['test_accuracy']:.4f} (train {train_s:.0f}s)",
            flush=True,
        )
        self.summarize()
        self.save()

    def reference(self) -> dict[str, float]:
        plain = [r for r in self.result["runs"] if r["factor"] == 1]
        best = max(plain, key=lambda r: r["uncompressed"]["val_accuracy"])
        return {"weight_decay": best["weight_decay"], **best["uncompressed"]}

    def summarize(self) -> None:
        if not any(r["factor"] == 1 for r in self.result["runs"]):
            return
        reference = self.reference()
        self.result["reference_n1"] = reference
        for run in self.result["runs"]:
            run["at_tolerance"] = tolerance_summary(run["curve"], reference)
        if "finetune" in self.result:
            ft = self.result["finetune"]
            ft["at_tolerance"] = tolerance_summary(ft["points"], reference)
        best: dict[str, Any] = {}
        for factor in self.setting.factors:
            runs = [r for r in self.result["runs"] if r["factor"] == factor]
            if runs:
                best[f"N={factor}"] = max(runs, key=_tradeoff)["weight_decay"]
        self.result["best_weight_decay"] = best

    def finetune_baseline(self) -> None:
        """N=1 (at its best weight decay) truncated at the shares the LoRITa runs reached,
        then fine-tuned."""
        wd = self.result["best_weight_decay"]["N=1"]
        key = (1, wd)
        merged, spec = self.merged[key], self.specs[key]
        shares = self._finetune_shares()
        names = eligible_layers(merged, exclude=default_exclude(spec.model.arch))
        input_shape = (spec.model.in_channels, spec.model.image_size, spec.model.image_size)
        problem = RankProblem(merged, names, input_shape)
        family = BudgetFamily(problem, "params")
        recipe = spec.train.model_copy(
            update={
                "epochs": self.setting.finetune_epochs,
                "lr": spec.train.lr * FINETUNE_LR_SCALE,
            }
        )
        params, flops = count_params(merged), count_flops(merged, input_shape)
        points = []
        started = time.monotonic()
        done = set()
        for share in shares:
            if family.removals_for(share) in done:
                continue  # two tolerances that land on the same allocation
            done.add(family.removals_for(share))
            ranks = family.ranks_at(share)
            lowrank = to_lowrank(copy.deepcopy(merged), ranks)
            before = self.evaluation.score(lowrank)
            train_model(lowrank, self.splits, recipe, device="cpu", run="finetune")
            points.append(
                {
                    "share": share,
                    "params_kept": count_params(lowrank) / params,
                    "flops_kept": count_flops(lowrank, input_shape) / flops,
                    "before_finetune": before,
                    **self.evaluation.score(lowrank),
                }
            )
            print(
                f"[quality] {self.setting.name} N=1+FT share {share:.3f}: test "
                f"{before['test_accuracy']:.4f} -> {points[-1]['test_accuracy']:.4f}",
                flush=True,
            )
        self.result["finetune"] = {
            "factor": 1,
            "weight_decay": wd,
            "finetune_epochs": self.setting.finetune_epochs,
            "finetune_lr": recipe.lr,
            "time_s": time.monotonic() - started,
            "points": points,
        }
        self.summarize()
        self.save()

    def _finetune_shares(self) -> list[float]:
        """Kept shares the LoRITa runs (at their best weight decay) reached at the
        tolerances, then half the smallest."""
        shares = set()
        best = self.result.get("best_weight_decay", {})
        for run in self.result["runs"]:
            if run["factor"] == 1 or best.get(f"N={run['factor']}") != run["weight_decay"]:
                continue
            for tol in TOLERANCES:
                point = run["at_tolerance"][str(tol)]["selected_on_val"]
                if point is not None and point["params_kept"] < 0.999:
                    shares.add(round(point["params_kept"], 4))
        if not shares:
            shares = {0.3, 0.1}
        candidates = shares | {round(min(shares) / 2, 4)}
        return sorted(candidates, reverse=True)[: self.setting.finetune_points]


def _tradeoff(run: dict[str, Any]) -> tuple[float, float]:
    """Best trade-off: largest params drop at the 0.5-point tolerance, then accuracy."""
    point = run.get("at_tolerance", {}).get(str(TOLERANCES[0]), {}).get("selected_on_val")
    drop = point["params_drop"] if point else -1.0
    return drop, run["uncompressed"]["val_accuracy"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run on digits")
    parser.add_argument("--only", default=None, help="run only settings whose name has this")
    parser.add_argument("--no-finetune", action="store_true", help="skip N=1 + fine-tuning")
    parser.add_argument(
        "--work-dir",
        type=Path,
        default=Path(tempfile.gettempdir()) / "lorita-bench-quality",
        help="trained checkpoints (reused by reruns)",
    )
    args = parser.parse_args(argv)
    for setting in settings(args.quick):
        if args.only and args.only not in setting.name:
            continue
        run = SettingRun(setting, args.work_dir, args.quick)
        for wd in setting.weight_decays:
            for factor in setting.factors:
                run.train_one(factor, wd)
        if not args.no_finetune and setting.finetune_epochs > 0:
            run.finetune_baseline()
        print(f"[quality] {setting.name}: best weight decay {run.result['best_weight_decay']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
