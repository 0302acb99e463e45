"""Data-aware truncation: each weight's SVD weighted by what its layer actually sees.

Plain SVD truncation keeps the rank-r weight closest to W, ``min ||W - W_r||``, as if
every input direction mattered equally. What matters is the layer's output on real
inputs, ``min E ||(W - W_r) x||^2``. With the second moment of the inputs
``M = E[x x^T] = L L^T`` (Cholesky), that error is ``||(W - W_r) L||_F^2``, so the best
rank-r weight comes from the SVD of ``W L = U S V^T``:

    W_r = U_r S_r (V_r^T L^{-1})

It is again two thin factors (same shapes, same cost), and at full rank it is W
exactly. The basis ``(U, S, V^T L^{-1})`` drops into every place that takes a layer's
SVD (``core.lowrank``, ``core.ranks.RankProblem``), so the rank search, the export and
the comparisons all truncate the same way. S then measures each direction's share of
the layer's output on the data, which is also what the budget and global allocations
should rank by.

The statistics come from a seeded sample of the *training* split, never validation
or test images, passed through the merged model in eval mode. A convolution's inputs
are its unfolded patches (c_in*k*k values at every output position), so its weight
matrix c_out x (c_in*k*k) is weighted by the same patches it multiplies.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional

from core.batching import Batches
from core.lowrank import Svd, weight_matrix

# Enough images for a well-conditioned second moment of a 784-wide FCN input; a conv
# sees hundreds of patches per image, so this is plenty there too.
CALIBRATION_SAMPLES = 2048
CALIBRATION_BATCH = 32
# Ridge added to M, relative to its mean diagonal: input directions the data never
# uses (MNIST's always-black border) keep a small weight instead of a singular M.
RIDGE = 1e-4


def _layer_inputs(module: nn.Module, inputs: Tensor) -> Tensor:
    """The rows x the layer's weight matrix multiplies: (count, fan_in)."""
    if isinstance(module, nn.Conv2d):
        # Pad as the conv itself does, then unfold without padding: that covers
        # 'same' / 'valid' (unfold takes numbers only, and 'same' with an even kernel
        # pads one side more) and the reflect / replicate / circular modes alike.
        # nn.Conv2d computes these F.pad amounts in its constructor for every case.
        mode = "constant" if module.padding_mode == "zeros" else module.padding_mode
        padded = functional.pad(inputs, module._reversed_padding_repeated_twice, mode=mode)
        patches = functional.unfold(
            padded, module.kernel_size, dilation=module.dilation, stride=module.stride
        )  # (batch, c_in*k*k, positions)
        return patches.transpose(1, 2).reshape(-1, patches.shape[1])
    return inputs.reshape(-1, inputs.shape[-1])


@torch.no_grad()
def input_moments(
    model: nn.Module,
    names: list[str],
    dataset: Any,
    *,
    device: str | torch.device = "cpu",
    samples: int = CALIBRATION_SAMPLES,
    seed: int = 0,
) -> dict[str, Tensor]:
    """E[x x^T] of each named layer's inputs over a seeded sample of `dataset`.

    float64 on the CPU, (fan_in x fan_in). `model` (merged, dense) is run in eval mode
    and left as it was. A layer whose forward is never called (attention's out_proj,
    whose weight its parent reads directly) is left out: it keeps the plain SVD.
    """
    sums: dict[str, Tensor] = {}
    counts: dict[str, int] = dict.fromkeys(names, 0)

    def record(module: nn.Module, args: tuple, _output: Any, name: str) -> None:
        rows = _layer_inputs(module, args[0].detach()).to(torch.float64)
        gram = (rows.T @ rows).cpu()
        sums[name] = gram if name not in sums else sums[name] + gram
        counts[name] += rows.shape[0]

    hooks = [
        model.get_submodule(name).register_forward_hook(
            lambda module, args, output, name=name: record(module, args, output, name)
        )
        for name in names
    ]
    was_training = model.training
    model.eval()
    try:
        batches = Batches(dataset, CALIBRATION_BATCH, device, seed=seed, limit=samples)
        for inputs, _labels in batches:
            model(inputs)
    finally:
        model.train(was_training)
        for hook in hooks:
            hook.remove()
    return {name: sums[name] / counts[name] for name in names if counts[name]}


def weighted_svd(weight: Tensor, moment: Tensor, ridge: float = RIDGE) -> Svd:
    """The data-aware basis (U, S, V^T L^{-1}) of a 2-D weight, M = L L^T (float64, CPU).

    ``U_r S_r (V^T L^{-1})_r`` is the rank-r weight with the least output error on
    inputs whose second moment is `moment`.
    """
    w = weight.to("cpu", torch.float64)
    m = moment.to("cpu", torch.float64)
    scale = float(m.diagonal().mean()) or 1.0
    eye = torch.eye(m.shape[0], dtype=m.dtype)
    lower = torch.linalg.cholesky(m + ridge * scale * eye)
    u, s, vh = torch.linalg.svd(w @ lower, full_matrices=False)
    # V^T L^{-1} by a triangular solve (X L = V^T), never forming the inverse.
    right = torch.linalg.solve_triangular(lower, vh, upper=False, left=False)
    return u, s, right


def data_aware_bases(
    model: nn.Module,
    names: list[str],
    dataset: Any,
    *,
    device: str | torch.device = "cpu",
    samples: int = CALIBRATION_SAMPLES,
) -> dict[str, Svd]:
    """{layer name: data-aware basis} of the merged dense `model` on `dataset` (the
    layers `input_moments` saw; the others keep their plain SVD)."""
    moments = input_moments(model, names, dataset, device=device, samples=samples)
    return {
        name: weighted_svd(weight_matrix(model.get_submodule(name)), moment)
        for name, moment in moments.items()
    }


def truncation_bases(
    model: nn.Module,
    names: list[str],
    truncation: str,
    train_dataset: Any,
    *,
    device: str | torch.device = "cpu",
) -> dict[str, Svd] | None:
    """The bases compress.truncation asks for: None for "svd" (every caller then takes
    the plain SVD itself), the data-aware ones on `train_dataset` for "data-aware"."""
    if truncation == "svd":
        return None
    if truncation == "data-aware":
        return data_aware_bases(model, names, train_dataset, device=device)
    raise ValueError(f"unknown truncation {truncation!r}; use 'svd' or 'data-aware'")
