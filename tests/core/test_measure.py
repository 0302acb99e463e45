"""Parameter and FLOP counts, latency and evaluation on small real models."""

import time

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from core.batching import Batches
from core.measure import count_flops, count_params, evaluate, measure_latency_ms


def _model() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),  # 4*1*9 + 4 params, 8*8*4*9 MACs
        nn.BatchNorm2d(4),  # 8 params
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(4 * 8 * 8, 10),  # 2560 + 10 params and MACs 2560
    )


def test_count_params_counts_shared_tensors_once():
    model = _model()
    assert count_params(model) == 40 + 8 + 2570
    shared = nn.Linear(3, 3)
    assert count_params(nn.Sequential(shared, shared)) == 12


def test_count_flops_is_two_per_multiply_add_for_one_sample():
    model = _model().train()
    flops = count_flops(model, (1, 8, 8))
    assert flops == 2 * (8 * 8 * 4 * 9 + 256 * 10)
    assert model.training  # restored after the eval-mode count
    assert all(m.training for m in model.modules())


def test_count_flops_works_with_batchnorm1d_which_rejects_batch_one_in_training():
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.BatchNorm1d(8), nn.Linear(8, 2))
    assert count_flops(model, (1, 4, 4)) == 2 * (16 * 8 + 8 * 2)


def test_measure_latency_is_fast_and_positive():
    model = _model()
    start = time.perf_counter()
    latency = measure_latency_ms(model, (1, 8, 8))
    assert 0 < latency < 1000
    assert time.perf_counter() - start < 2.0
    assert measure_latency_ms(model, (1, 8, 8), batch_size=4, repeats=3) > 0
    assert model.training


def test_evaluate_accuracy_and_loss():
    torch.manual_seed(0)
    x = torch.randn(50, 1, 8, 8)
    model = _model().eval()
    with torch.no_grad():
        logits = model(x)
    labels = logits.argmax(1)
    labels[:10] = (labels[:10] + 1) % 10  # exactly 10 wrong
    expected_loss = nn.functional.cross_entropy(logits, labels).item()
    dataset = TensorDataset(x, labels)
    for data in (dataset, DataLoader(dataset, batch_size=7)):
        accuracy, loss = evaluate(model, data, "cpu", batch_size=16)
        assert accuracy == pytest.approx(0.8)
        assert loss == pytest.approx(expected_loss, rel=1e-5)


def test_evaluate_rejects_empty_data():
    empty = TensorDataset(torch.zeros(0, 1, 8, 8), torch.zeros(0, dtype=torch.long))
    with pytest.raises(ValueError, match="empty"):
        evaluate(_model(), empty, "cpu")


def test_evaluate_per_sample_marks_the_wrong_samples_and_restores_modes():
    torch.manual_seed(0)
    x = torch.randn(40, 1, 8, 8)
    model = _model().eval()
    with torch.no_grad():
        labels = model(x).argmax(1)
    labels[[3, 17, 30]] = (labels[[3, 17, 30]] + 1) % 10
    model.train()
    model[1].eval()  # one module in its own mode: kept as it was
    result = evaluate(model, Batches(TensorDataset(x, labels), 16, "cpu"), per_sample=True)
    assert result.accuracy == pytest.approx(37 / 40)
    assert result.correct.dtype == torch.bool
    assert (~result.correct).nonzero().flatten().tolist() == [3, 17, 30]
    assert model.training and not model[1].training and model[4].training
    # Same numbers whether the data comes as Batches, a dataset or a DataLoader.
    accuracy, loss = evaluate(model, TensorDataset(x, labels))
    assert (accuracy, loss) == pytest.approx((result.accuracy, result.loss))
    assert evaluate(model, TensorDataset(x, labels)).correct is None
