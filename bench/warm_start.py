"""Warm start: compressing a model the user already trained.

The bench trains the plain (N=1) model itself, as the user would have, and treats it
as the uploaded model. Its accuracy is the reference R. Then, for K fine-tune epochs
in --epochs (default 1, 2, 4), three ways to make it smaller are compared:

- warm LoRITa (N=2, 3): the balanced split of the trained weights
  (factorize(init="pretrained")), K epochs with the family's "from pretrained"
  recipe (the one a job with model.weights uses), merged and swept along the budget
  family like a job's rank search;
- N=1 truncation + fine-tuning: the trained model's own SVD truncated at the kept
  shares warm LoRITa N=3 reached for the same K (and at a smaller one), turned into
  its two-layer form and fine-tuned K epochs (same optimizer and learning rate as the
  warm start; weight decay of the from-scratch recipe, as there is no spectrum left to
  push down once the ranks are cut);
- LoRITa from scratch (N=3): the from-scratch recipe for as many epochs as the warm
  start paid in all (pretraining + the largest K).

Also the plain truncation itself (K = 0, no training at all). For every run the
params / FLOPs drop at tolerance t in TOLERANCES points from R is the most compressed
point whose validation accuracy is >= R_val - t (chosen on validation, as a job
does; its test accuracy is reported beside it).

Results go to results/warm_start_<setting>.json after every run; trained weights are
cached in --work-dir, so a rerun continues where the last one stopped.

    python -m bench.warm_start                   # FCN on MNIST (pretrained 8 epochs)
    python -m bench.warm_start --quick           # smoke run on digits (a minute)
    python -m bench.warm_start --table           # the README table and the plot
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from bench.common import RESULTS_DIR, read_result, write_result
from bench.quality import SWEEP, BenchRun, QualitySetting, drop_at, sweep
from core.catalog import default_finetune_epochs, default_recipe
from core.factorize import eligible_layers, factorize, merge
from core.job.stages import FINETUNE_LR_SCALE
from core.lowrank import to_lowrank
from core.measure import count_flops, count_params
from core.models import build_model, default_exclude
from core.peers.compare import finetune_recipe
from core.ranks import BudgetFamily, RankProblem
from core.spec import TrainSpec
from core.train import Distillation, seed_everything, train_model

TOLERANCES = (0.001, 0.0015, 0.005, 0.01)
# A finer sweep at the small shares where a warm-started FCN ends up.
FINE_SWEEP = tuple(sorted(set(SWEEP) | {round(0.9**k, 4) for k in range(20, 40)}, reverse=True))


@dataclass
class WarmSetting:
    name: str
    arch: str
    dataset: str
    pretrain_epochs: int
    train_subset: int | None
    finetune_epochs: tuple[int, ...] = (1, 2, 4)
    factors: tuple[int, ...] = (2, 3)
    test_limit: int | None = None
    from_scratch: bool = True  # also train LoRITa from scratch for the epochs paid


def settings(quick: bool) -> list[WarmSetting]:
    if quick:
        return [WarmSetting("quick-fcn-digits", "fcn", "digits", 3, None, (1, 2), (3,))]
    return [
        WarmSetting("fcn-mnist", "fcn", "mnist", 8, None),
        # Shortened for a CPU: 10,000 training images, N=3 and K in (1, 2) only, no
        # from-scratch run; sweeps scored on 2,000 test images.
        WarmSetting(
            "resnet20-fashion",
            "resnet20",
            "fashion-mnist",
            10,
            10_000,
            finetune_epochs=(1, 2),
            factors=(3,),
            test_limit=2000,
            from_scratch=False,
        ),
    ]


def _train_spec(fields: dict[str, Any], epochs: int, **overrides: Any) -> TrainSpec:
    values = {**fields, "epochs": epochs, **overrides}
    values.update(amp=False, compile=False, channels_last=False, seed=0)
    return TrainSpec(**values)


class WarmRun(BenchRun):
    benchmark = "warm_start"

    def __init__(self, setting: WarmSetting, work_dir: Path, quick: bool) -> None:
        super().__init__(setting, work_dir, quick)
        info = self.splits
        self.shape = (info.num_classes, info.in_channels, info.image_size)
        self.input_shape = (info.in_channels, info.image_size, info.image_size)
        self.exclude = default_exclude(setting.arch)
        self.scratch = default_recipe(setting.arch, image_size=info.image_size)
        self.warm = default_recipe(setting.arch, image_size=info.image_size, pretrained=True)
        self.curve_setting = QualitySetting(
            setting.name, setting.arch, setting.dataset, 0, None, (), sweep=FINE_SWEEP
        )
        self.result["tolerances"] = list(TOLERANCES)
        self.result["recipes"] = {"from_scratch": self.scratch, "from_pretrained": self.warm}

    def save(self) -> None:
        # A smoke run's numbers mean nothing: they stay beside its cache.
        folder = self.work_dir if self.result["quick"] else None
        write_result(f"warm_start_{self.setting.name}", self.result, folder)

    def _build(self) -> nn.Module:
        return build_model(self.setting.arch, *self.shape)

    def _train(self, model: nn.Module, recipe: TrainSpec, run: str, tag: str) -> float:
        checkpoint = self.work_dir / f"{tag}.pt"
        started = time.monotonic()
        history = train_model(
            model, self.splits, recipe, device="cpu", run=run, checkpoint_path=checkpoint
        )
        return sum(e.get("epoch_time_s", 0.0) for e in history) or time.monotonic() - started

    # --- the user's model ----------------------------------------------------------------

    def pretrain(self) -> nn.Module:
        """The plain model trained with the from-scratch recipe (cached as safetensors)."""
        path = self.work_dir / "pretrained.safetensors"
        model = self._build()
        if path.is_file():
            model.load_state_dict(load_file(str(path)))
            train_s = self.result.get("pretrained", {}).get("train_s")
        else:
            seed_everything(0)
            model = self._build()
            recipe = _train_spec(self.scratch, self.setting.pretrain_epochs)
            train_s = self._train(model, recipe, "pretrain", "pretrain")
            save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
        model.eval()
        self.flops = count_flops(model, self.input_shape)
        reference = self.evaluation.score(model)
        self.result["pretrained"] = {
            "epochs": self.setting.pretrain_epochs,
            "train_s": train_s,
            "params": count_params(model),
            **reference,
        }
        print(f"[warm] pretrained: test {reference['test_accuracy']:.4f}", flush=True)
        self.save()
        return model

    # --- the three ways ------------------------------------------------------------------

    def record(self, method: str, factor: int, epochs: int, paid: int, merged, extra=None):
        merged = merged.eval()
        names = eligible_layers(merged, exclude=self.exclude)
        started = time.monotonic()
        curve, problem, _ = sweep(
            merged, names, self.input_shape, self.curve_setting, self.evaluation
        )
        run = {
            "method": method,
            "factor": factor,
            "finetune_epochs": epochs,
            "epochs_paid": paid,
            "sweep_s": time.monotonic() - started,
            "uncompressed": {k: curve[0][k] for k in ("val_accuracy", "test_accuracy")},
            "curve": curve,
            **(extra or {}),
        }
        self._add(run)
        return problem

    def _add(self, run: dict[str, Any]) -> None:
        run["at_tolerance"] = self._at_tolerance(run["curve"])
        self.result["runs"].append(run)
        best = run["at_tolerance"][str(TOLERANCES[1])]
        drop = f"{best['params_drop']:.1%}" if best else "none"
        print(
            f"[warm] {run['method']} N={run['factor']} K={run['finetune_epochs']}: "
            f"params drop within {TOLERANCES[1] * 100:g} pt: {drop}",
            flush=True,
        )
        self.save()

    def _at_tolerance(self, curve: list[dict[str, Any]]) -> dict[str, Any]:
        reference = self.result["pretrained"]
        return {
            str(t): drop_at(curve, reference["val_accuracy"] - t, "val_accuracy")
            for t in TOLERANCES
        }

    def plain_truncation(self, pretrained: nn.Module) -> None:
        self.record("plain truncation", 1, 0, self.setting.pretrain_epochs, pretrained)

    def warm_lorita(self, pretrained: nn.Module, factor: int, epochs: int) -> None:
        model = factorize(pretrained, factor, exclude=self.exclude, init="pretrained").train()
        recipe = _train_spec(self.warm, epochs)
        train_s = self._train(model, recipe, "lorita", f"warm_n{factor}_k{epochs}")
        paid = self.setting.pretrain_epochs + epochs
        self.record("warm LoRITa", factor, epochs, paid, merge(model), {"train_s": train_s})

    def warm_then_finetune(self, pretrained: nn.Module, factor: int, epochs: int) -> None:
        """What a job with the user's weights does, for `epochs` in all: the warm start
        for epochs - F, truncation, then F epochs of the job's fine-tuning (F = the
        family's default for a warm start, the job's fine-tune learning rate). The
        truncated shares are those the warm model reached at 0.5, 1 and 1.5 points on
        validation (a job picks one such point; fine-tuning then recovers part of it)."""
        finetune = default_finetune_epochs(self.setting.arch, pretrained=True)
        warm_epochs = epochs - finetune
        if finetune < 1 or warm_epochs < 1:
            return
        model = factorize(pretrained, factor, exclude=self.exclude, init="pretrained").train()
        self._train(
            model, _train_spec(self.warm, warm_epochs), "lorita", f"warm_n{factor}_k{warm_epochs}"
        )
        merged = merge(model).eval()
        names = eligible_layers(merged, exclude=self.exclude)
        curve, problem, family = sweep(
            merged, names, self.input_shape, self.curve_setting, self.evaluation
        )
        reference = self.result["pretrained"]
        recipe = finetune_recipe(_train_spec(self.warm, finetune), finetune, FINETUNE_LR_SCALE)
        points, seen, train_s = [], set(), 0.0
        # The job distils from the user's model (compress.distill), so deeper cuts recover.
        teacher = Distillation(pretrained)
        for tolerance in (0.005, 0.01, 0.015, 0.02, 0.03):
            point = drop_at(curve, reference["val_accuracy"] - tolerance, "val_accuracy")
            if point is None:
                continue
            removed = family.removals_for(point["params_kept"])
            if removed in seen:
                continue
            seen.add(removed)
            lowrank = to_lowrank(copy.deepcopy(merged), family.ranks_after(removed))
            started = time.monotonic()
            seed_everything(0)
            train_model(lowrank, self.splits, recipe, device="cpu", run="finetune", teacher=teacher)
            train_s += time.monotonic() - started
            points.append(
                {
                    "share": point["params_kept"],
                    "params_kept": count_params(lowrank) / reference["params"],
                    "flops_kept": count_flops(lowrank, self.input_shape) / self.flops,
                    "before_finetune": {k: point[k] for k in ("val_accuracy", "test_accuracy")},
                    **self.evaluation.score(lowrank.eval()),
                }
            )
        points.append({"share": 1.0, "params_kept": 1.0, "flops_kept": 1.0, **curve[0]})
        self._add(
            {
                "method": "warm LoRITa + fine-tuning",
                "factor": factor,
                "finetune_epochs": epochs,
                "warm_epochs": warm_epochs,
                "epochs_paid": self.setting.pretrain_epochs + epochs,
                "train_s": train_s,
                "uncompressed": {k: curve[0][k] for k in ("val_accuracy", "test_accuracy")},
                "curve": points,
            }
        )

    def truncate_and_finetune(self, pretrained: nn.Module, epochs: int) -> None:
        """The trained model truncated at the shares warm N=3 reached, then fine-tuned."""
        names = eligible_layers(pretrained, exclude=self.exclude)
        problem = RankProblem(pretrained, names, self.input_shape)
        family = BudgetFamily(problem, "params")
        params = count_params(pretrained)
        flops = count_flops(pretrained, self.input_shape)
        recipe = _train_spec(self.warm, epochs, weight_decay=self.scratch["weight_decay"])
        points, seen, train_s = [], set(), 0.0
        teacher = Distillation(pretrained)
        for share in self._shares(epochs):
            removed = family.removals_for(share)
            if removed in seen:
                continue
            seen.add(removed)
            lowrank = to_lowrank(copy.deepcopy(pretrained), family.ranks_after(removed))
            before = self.evaluation.score(lowrank.eval())
            started = time.monotonic()
            # Distilled from the model itself, as the job's plain+finetune peer is.
            train_model(lowrank, self.splits, recipe, device="cpu", run="finetune", teacher=teacher)
            train_s += time.monotonic() - started
            points.append(
                {
                    "share": share,
                    "params_kept": count_params(lowrank) / params,
                    "flops_kept": count_flops(lowrank, self.input_shape) / flops,
                    "before_finetune": before,
                    **self.evaluation.score(lowrank.eval()),
                }
            )
        # The uncompressed point closes the curve, so "no drop within t" reads as 0%.
        reference = {k: self.result["pretrained"][k] for k in ("val_accuracy", "test_accuracy")}
        points.append({"share": 1.0, "params_kept": 1.0, "flops_kept": 1.0, **reference})
        self._add(
            {
                "method": "N=1 truncation + fine-tuning",
                "factor": 1,
                "finetune_epochs": epochs,
                "epochs_paid": self.setting.pretrain_epochs + epochs,
                "train_s": train_s,
                "uncompressed": reference,
                "curve": points,
            }
        )

    def _shares(self, epochs: int) -> list[float]:
        shares = set()
        for run in self.result["runs"]:
            if run["method"] == "warm LoRITa" and run["finetune_epochs"] == epochs:
                for point in run["at_tolerance"].values():
                    if point is not None and point["params_kept"] < 0.999:
                        shares.add(round(point["params_kept"], 4))
        if not shares:
            shares = {0.2, 0.1}
        return sorted(shares | {round(min(shares) * 0.7, 4)}, reverse=True)

    def from_scratch(self, factor: int) -> None:
        epochs = self.setting.pretrain_epochs + max(self.setting.finetune_epochs)
        seed_everything(0)
        model = factorize(self._build(), factor, exclude=self.exclude, inplace=True)
        recipe = _train_spec(self.scratch, epochs)
        train_s = self._train(model, recipe, "lorita", f"scratch_n{factor}_e{epochs}")
        self.record("LoRITa from scratch", factor, 0, epochs, merge(model), {"train_s": train_s})


def run_setting(setting: WarmSetting, work_dir: Path, quick: bool) -> dict[str, Any]:
    run = WarmRun(setting, work_dir, quick)
    pretrained = run.pretrain()
    run.plain_truncation(pretrained)
    largest = max(setting.factors)
    for epochs in setting.finetune_epochs:
        run.warm_lorita(pretrained, largest, epochs)
        run.warm_then_finetune(pretrained, largest, epochs)
        run.truncate_and_finetune(pretrained, epochs)
    for factor in setting.factors:
        if factor != largest:
            for epochs in setting.finetune_epochs:
                run.warm_lorita(pretrained, factor, epochs)
    if setting.from_scratch:
        run.from_scratch(largest)
    return run.result


def markdown_table(result: dict[str, Any]) -> str:
    """The README's table: params / FLOPs drop (and test accuracy) at each tolerance."""
    reference = result["pretrained"]
    tolerances = result["tolerances"]
    head = ["method", "N", "K", "epochs paid", "uncompressed test"] + [
        f"within {100 * t:g} pt" for t in tolerances
    ]
    lines = [
        f"Pretrained N=1: {reference['epochs']} epochs, test "
        f"{100 * reference['test_accuracy']:.2f}% (val {100 * reference['val_accuracy']:.2f}%)"
        ". Cells: params drop / FLOPs drop "
        "(test accuracy) of the smallest point within the tolerance on validation.",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for run in result["runs"]:
        cells = [
            run["method"],
            str(run["factor"]),
            str(run["finetune_epochs"]),
            str(run["epochs_paid"]),
            f"{100 * run['uncompressed']['test_accuracy']:.2f}%",
        ]
        for t in tolerances:
            point = run["at_tolerance"][str(t)]
            cells.append(
                "none"
                if point is None
                else f"{point['params_drop']:.1%} / {point['flops_drop']:.1%} "
                f"({100 * point['test_accuracy']:.2f}%)"
            )
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(result: dict[str, Any], path: Path) -> Path:
    """Test accuracy against params kept: one line per run, the tolerance lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {
        "plain truncation": "tab:gray",
        "N=1 truncation + fine-tuning": "tab:green",
        "warm LoRITa": "tab:red",
        "warm LoRITa + fine-tuning": "tab:orange",
        "LoRITa from scratch": "tab:purple",
    }
    styles = {0: ":", 1: "--", 2: "-.", 4: "-"}
    figure, axis = plt.subplots(figsize=(9, 5.5))
    for run in result["runs"]:
        points = sorted(run["curve"], key=lambda point: point["params_kept"])
        label = f"{run['method']} N={run['factor']}" + (
            f" K={run['finetune_epochs']}" if run["finetune_epochs"] else ""
        )
        axis.plot(
            [1 - point["params_kept"] for point in points],
            [100 * point["test_accuracy"] for point in points],
            styles.get(run["finetune_epochs"], "-"),
            marker="o" if run["method"].startswith("N=1") else None,
            markersize=4,
            color=colors.get(run["method"], "black"),
            alpha=0.5 if run["factor"] == 2 else 1.0,
            label=label,
        )
    reference = 100 * result["pretrained"]["test_accuracy"]
    for tolerance in result["tolerances"]:
        axis.axhline(reference - 100 * tolerance, color="black", linewidth=0.5, alpha=0.4)
    axis.set_xlim(0.5, 1.0)
    axis.set_ylim(reference - 2.0, reference + 0.3)
    axis.set_xlabel("params drop")
    axis.set_ylabel("test accuracy (%)")
    axis.set_title(
        f"{result['setting']['name']}: compressing a model trained "
        f"{result['pretrained']['epochs']} epochs ({reference:.2f}%)"
    )
    axis.legend(fontsize=7, loc="lower left")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run on digits")
    parser.add_argument("--work-dir", type=Path, default=Path(tempfile.gettempdir()) / "warm")
    parser.add_argument("--only", help="run one setting, by name (fcn-mnist, resnet20-fashion)")
    parser.add_argument("--train-subset", type=int, help="train on this many images only")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--table", action="store_true", help="print the results as markdown")
    args = parser.parse_args(argv)
    if args.table:
        for setting in settings(args.quick):
            if args.only and setting.name != args.only:
                continue
            result = read_result(f"warm_start_{setting.name}")
            print(markdown_table(result))
            print(plot(result, RESULTS_DIR / f"warm_start_{setting.name}.png"))
        return 0
    torch.set_num_threads(args.threads)
    for setting in settings(args.quick):
        if args.only and setting.name != args.only:
            continue
        if args.train_subset:
            setting.train_subset = args.train_subset
        run_setting(setting, args.work_dir, args.quick)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
