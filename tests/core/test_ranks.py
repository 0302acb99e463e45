"""Rank strategies: fractions, budgets and the accuracy search on the validation split."""

from __future__ import annotations

import math
from typing import get_args

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from core.data import load_dataset
from core.factorize import eligible_layers, factorize, merge
from core.lowrank import pays_off, to_lowrank
from core.measure import count_flops, count_params, evaluate
from core.models import build_model
from core.ranks import STRATEGIES, RankProblem, choose_ranks, global_ranks, uniform_ranks
from core.spec import CompressSpec, RankStrategy
from core.train import seed_everything, train_model
from tests.core.train_recipe import plain_recipe


def _with_spectrum(layer: nn.Linear, spectrum: torch.Tensor, seed: int) -> None:
    """Give `layer` a weight with exactly these singular values."""
    generator = torch.Generator().manual_seed(seed)
    m, n = layer.weight.shape
    u, _ = torch.linalg.qr(torch.randn(m, m, generator=generator))
    v, _ = torch.linalg.qr(torch.randn(n, n, generator=generator))
    k = min(m, n)
    with torch.no_grad():
        layer.weight.copy_(u[:, :k] @ torch.diag(spectrum) @ v[:, :k].T)


def _synthetic_model() -> nn.Sequential:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Flatten(), nn.Linear(64, 48), nn.ReLU(), nn.Linear(48, 40), nn.ReLU(), nn.Linear(40, 4)
    )
    _with_spectrum(model[1], torch.logspace(0, -4, 48), seed=1)
    _with_spectrum(model[3], torch.logspace(0.3, -3, 40), seed=2)
    _with_spectrum(model[5], torch.tensor([3.0, 2.0, 1.0, 0.5]), seed=3)
    return model.eval()


NAMES = ["1", "3", "5"]
INPUT = (1, 8, 8)


def _problem() -> RankProblem:
    return RankProblem(_synthetic_model(), NAMES, INPUT)


def test_uniform_keeps_the_same_share_per_layer():
    ranks = uniform_ranks(_problem(), 0.25)
    assert ranks == {"1": 12, "3": 10, "5": 1}


def test_global_drops_the_smallest_normalised_values_first():
    problem = _problem()
    ranks = global_ranks(problem, 0.5)
    total = sum(layer.full_rank for layer in problem)
    assert sum(ranks.values()) == pytest.approx(0.5 * total, abs=len(NAMES))
    kept, dropped = [], []
    for layer in problem:
        normalised = (layer.s / layer.s[0]).tolist()
        kept += normalised[: ranks[layer.name]]
        dropped += normalised[ranks[layer.name] :]
    assert min(kept) >= max(dropped)


def test_costs_match_the_measured_low_rank_model():
    model = _synthetic_model()
    problem = RankProblem(model, NAMES, INPUT)
    for ranks in ({"1": 5, "3": 7, "5": 4}, {"1": 48, "3": 2, "5": 1}, {"1": 30, "3": 30, "5": 2}):
        effective = problem.effective(ranks)
        compact = to_lowrank(model, effective)
        params, flops = problem.kept(effective)
        assert params == pytest.approx(count_params(compact) / count_params(model))
        assert flops == pytest.approx(count_flops(compact, INPUT) / count_flops(model, INPUT))
        for name, rank in effective.items():
            m, n = problem.by_name[name].shape
            assert rank == min(m, n) or pays_off(m, n, rank)


def test_every_spec_strategy_has_one_strategy_object():
    assert set(STRATEGIES) == set(get_args(RankStrategy))


def test_candidates_are_the_model_to_lowrank_exports():
    """The search evaluates exactly the exported form: same structure, same function."""
    model = _synthetic_model()
    problem = RankProblem(model, NAMES, INPUT)
    x = torch.randn(16, *INPUT, generator=torch.Generator().manual_seed(5))
    for ranks in ({"1": 5, "3": 7, "5": 1}, {"1": 48, "3": 2, "5": 4}, problem.full_ranks()):
        effective = problem.effective(ranks)
        problem.set_ranks(effective)
        exported = to_lowrank(model, effective)
        candidate = problem.model.state_dict()
        assert list(candidate) == list(exported.state_dict())
        with torch.no_grad():
            torch.testing.assert_close(problem.model(x), exported(x), rtol=1e-4, atol=1e-5)
    # Back at full rank, the working copy holds the original weights exactly.
    for name in NAMES:
        assert torch.equal(
            problem.model.get_submodule(name).weight, model.get_submodule(name).weight
        )


def _labelled_by(model: nn.Module, count: int, seed: int, margin: float = 0.0) -> TensorDataset:
    """Random inputs labelled by `model`, kept only where its top two logits differ by
    more than `margin` (points right at a decision boundary flip with any change)."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(count * 4, *INPUT, generator=generator)
    with torch.no_grad():
        top = model(x).topk(2, dim=1)
    keep = (top.values[:, 0] - top.values[:, 1] > margin).nonzero().flatten()[:count]
    return TensorDataset(x[keep], top.indices[keep, 0])


@pytest.mark.parametrize("target", ["params", "flops"])
@pytest.mark.parametrize("budget", [0.2, 0.5])
def test_budget_is_respected(target, budget):
    model = _synthetic_model()
    compress = CompressSpec(strategy="budget", budget=budget, target=target)
    choice = choose_ranks(
        model, NAMES, compress, val_dataset=_labelled_by(model, 300, 0), input_shape=INPUT
    )
    kept = choice.flops_kept if target == "flops" else choice.params_kept
    assert kept <= budget + 1e-9
    compact = to_lowrank(model, choice.ranks)
    if target == "params":
        assert count_params(compact) <= budget * count_params(model)
    # The budget is used: one more singular value anywhere would break it or not pay.
    assert kept > budget - 0.1
    assert choice.curve and all(p["val_accuracy"] is not None for p in choice.curve)


@pytest.mark.parametrize("sample_limit", [None, 1000])
def test_accuracy_search_stays_within_tolerance_on_validation(sample_limit):
    """The teacher's labels on random inputs: truncation costs accuracy gradually."""
    model = _synthetic_model()
    val = _labelled_by(model, 3000, 1, margin=0.05)
    tolerance = 0.02
    compress = CompressSpec(strategy="accuracy", max_accuracy_drop=tolerance)
    choice = choose_ranks(
        model, NAMES, compress, val_dataset=val, input_shape=INPUT, sample_limit=sample_limit
    )
    compact = to_lowrank(model, choice.ranks)
    accuracy, _ = evaluate(compact, val)
    assert choice.reference_val_accuracy == 1.0  # the teacher labels its own inputs
    assert accuracy >= 1.0 - tolerance
    assert accuracy == pytest.approx(choice.val_accuracy, abs=1e-6)
    assert choice.params_kept < 0.7  # it did compress
    # Removing noticeably more must break the tolerance (the search is not lazy):
    # the next curve point beyond the chosen one fails.
    beyond = [p for p in choice.curve if p["params_kept"] < choice.params_kept - 1e-9]
    assert beyond and max(p["val_accuracy"] for p in beyond) < 1.0 - tolerance + 0.01
    assert choice.search["evaluations"] <= 20


def test_accuracy_search_on_a_trained_digits_model_keeps_accuracy():
    splits = load_dataset("digits")
    seed_everything(0)
    model = factorize(build_model("fcn", 10, 1, 8, hidden=(128, 128)), 2)
    recipe = plain_recipe(epochs=8, lr=2e-3, weight_decay=1e-3)
    train_model(model, splits, recipe, device="cpu")
    merged = merge(model).eval()
    names = eligible_layers(merged)
    choice = choose_ranks(
        merged,
        names,
        CompressSpec(max_accuracy_drop=0.01),
        val_dataset=splits.val,
        input_shape=(1, 8, 8),
    )
    reference, _ = evaluate(merged, splits.val)
    compact = to_lowrank(merged, choice.ranks)
    compressed, _ = evaluate(compact, splits.val)
    assert reference > 0.9
    assert compressed >= reference - 0.01
    assert math.isclose(choice.reference_val_accuracy, reference)
    assert count_params(compact) < 0.9 * count_params(merged)  # it did compress
