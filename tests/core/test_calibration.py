"""Data-aware truncation (core.calibration): the weighted basis is exact at full rank,
beats the plain SVD on the layer's own inputs at every rank, follows a conv's unfolded
patches, and runs through a real job (search, export and comparisons) on the digits."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from core.calibration import data_aware_bases, input_moments, truncation_bases
from core.lowrank import to_lowrank, truncate, truncated_matrix, weight_matrix
from core.pipeline import run_job
from core.spec import JobSpec


def _skewed_images(count: int = 96) -> TensorDataset:
    """Images whose channels have very different scales: what the plain SVD ignores."""
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(count, 3, 8, 8, generator=generator)
    images *= torch.tensor([3.0, 0.05, 1.0])[None, :, None, None]
    return TensorDataset(images, torch.zeros(count, dtype=torch.long))


def _output_error(model: nn.Module, approx: nn.Module, images: torch.Tensor) -> float:
    with torch.no_grad():
        return float(((approx(images) - model(images)) ** 2).mean())


@pytest.mark.parametrize(
    "layer",
    [nn.Conv2d(3, 12, 3, padding=1, stride=2), nn.Sequential(nn.Flatten(), nn.Linear(192, 20))],
)
def test_weighted_basis_is_exact_at_full_rank_and_better_on_the_data(layer):
    torch.manual_seed(1)
    model = nn.Sequential(layer).eval()
    name = "0" if isinstance(layer, nn.Conv2d) else "0.1"
    data = _skewed_images()
    bases = data_aware_bases(model, [name], data)
    weight = weight_matrix(model.get_submodule(name)).double()
    full = min(weight.shape)
    assert torch.allclose(truncated_matrix(bases[name], full), weight, atol=1e-10)
    images = data.tensors[0]
    for rank in (1, 3, 6):
        plain = _output_error(model, to_lowrank(model, {name: rank}), images)
        aware = _output_error(model, to_lowrank(model, {name: rank}, bases=bases), images)
        assert aware < plain, (rank, aware, plain)
        # The dense and the two-layer forms of the same basis compute the same function.
        dense = truncate(model, {name: rank}, bases=bases)
        assert _output_error(dense, to_lowrank(model, {name: rank}, bases=bases), images) < 1e-8


def test_conv_moments_are_those_of_its_unfolded_patches():
    conv = nn.Conv2d(3, 4, 3, padding=1)
    model = nn.Sequential(conv)
    data = _skewed_images(8)
    moment = input_moments(model, ["0"], data)["0"]
    patches = nn.functional.unfold(data.tensors[0].double(), 3, padding=1)
    rows = patches.transpose(1, 2).reshape(-1, 27)
    assert torch.allclose(moment, rows.T @ rows / rows.shape[0], atol=1e-10)
    # Channel 1 is 60x smaller than channel 0: its patch entries carry ~3600x less energy.
    assert moment[9:18].diagonal().mean() < moment[:9].diagonal().mean() / 1000


@pytest.mark.parametrize(
    "conv",
    [
        nn.Conv2d(3, 6, 3, padding="same"),
        nn.Conv2d(3, 6, 4, padding="same", dilation=2),  # even kernel: one side pads more
        nn.Conv2d(3, 6, 3, padding="valid"),
        nn.Conv2d(3, 6, 3, padding=1, padding_mode="reflect"),
        nn.Conv2d(3, 6, 3, padding=(2, 1), stride=2, padding_mode="circular"),
    ],
    ids=["same", "same-even-dilated", "valid", "reflect", "circular-strided"],
)
def test_conv_patches_follow_every_padding_the_conv_allows(conv):
    """The moments are those of what the conv really multiplies: for any change D of
    its weight, the output error the conv itself shows, mean over positions of
    ||D x||^2, equals tr(D M D^T); and the basis still gives the conv back at full
    rank."""
    torch.manual_seed(2)
    model = nn.Sequential(conv).eval()
    data = _skewed_images(16)
    images = data.tensors[0]
    moment = input_moments(model, ["0"], data)["0"]
    probe = copy.deepcopy(conv).double()
    probe.bias = None
    with torch.no_grad():
        probe.weight.normal_()
        measured = float((probe(images.double()) ** 2).sum(1).mean())
    delta = probe.weight.detach().reshape(conv.out_channels, -1)
    assert float(torch.trace(delta @ moment @ delta.T)) == pytest.approx(measured, rel=1e-9)
    bases = data_aware_bases(model, ["0"], data)
    assert _output_error(model, truncate(model, {"0": 6}, bases=bases), images) < 1e-10


def test_a_layer_whose_forward_never_runs_keeps_the_plain_svd():
    attention = nn.MultiheadAttention(8, 2, batch_first=True)

    class Tokens(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Linear(3, 8)
            self.attention = attention

        def forward(self, x):
            tokens = self.embed(x.flatten(2).transpose(1, 2))  # (N, 64 positions, 3)
            return self.attention(tokens, tokens, tokens)[0]

    bases = data_aware_bases(Tokens().eval(), ["embed", "attention.out_proj"], _skewed_images(8))
    assert set(bases) == {"embed"}  # out_proj's weight is read by its parent, never called


def test_truncation_svd_means_no_bases_and_unknown_is_refused():
    model = nn.Sequential(nn.Linear(4, 4))
    assert truncation_bases(model, ["0"], "svd", None) is None
    with pytest.raises(ValueError, match="unknown truncation"):
        truncation_bases(model, ["0"], "cholesky", None)


def _job(truncation: str) -> JobSpec:
    return JobSpec.model_validate(
        {
            "model": {"arch": "fcn"},
            "data": {"dataset": "digits", "val_fraction": 0.25},
            "train": {"epochs": 3, "seed": 0},
            "compress": {
                "strategy": "budget",
                "budget": 0.08,
                "finetune_epochs": 0,
                "truncation": truncation,
            },
            "comparisons": ["plain+finetune"],
        }
    )


def test_a_data_aware_job_cuts_the_same_model_better_and_exports_that_cut(tmp_path):
    from core.export import load_dense, load_lowrank

    # One checkpoint folder: both jobs truncate the very same trained models.
    checkpoints = tmp_path / "checkpoints"
    plain = run_job(_job("svd"), tmp_path / "svd", device="cpu", checkpoint_dir=checkpoints)
    aware = run_job(
        _job("data-aware"), tmp_path / "aware", device="cpu", checkpoint_dir=checkpoints
    )
    assert aware.accuracy.uncompressed == plain.accuracy.uncompressed
    for result in (plain, aware):
        assert result.params.compressed <= 0.08 * result.params.uncompressed
    # Without fine-tuning the cut alone decides: the data-aware one keeps more.
    assert aware.val_accuracy.compressed > plain.val_accuracy.compressed
    assert aware.accuracy.compressed > plain.accuracy.compressed
    # Both exports are the measured data-aware cut: the compact and the dense file agree.
    inputs = torch.randn(16, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        compact = load_lowrank(tmp_path / "aware", preprocess=False)(inputs)
        dense = load_dense(tmp_path / "aware", preprocess=False)(inputs)
    assert torch.allclose(compact, dense, atol=1e-4)
    # The peer cut the same way, and the report still shows each weight's own spectrum.
    assert aware.comparisons["plain+finetune"].ranks != plain.comparisons["plain+finetune"].ranks
    for name, layer in aware.layers.items():
        assert layer.singular_values == pytest.approx(plain.layers[name].singular_values, rel=1e-5)
