"""Composed linear layers: one weight layer trained as a product of N linear maps.

LoRITa replaces a weight layer by N linear maps with nothing between them. With
ordinary weight decay on every factor, training then prefers a low-rank product, and
after training the factors multiply back into exactly one dense weight.

- ComposedLinear(d_in -> d_out): N-1 bias-free d_in x d_in maps, then d_in -> d_out
  with the bias; merged weight ``W = F[N-1] @ ... @ F[0]``.
- ComposedConv2d(c_in -> c_out, k x k): the k x k convolution without bias, then N-1
  bias-free 1x1 convolutions c_out -> c_out; the bias comes after the whole chain.

Every order of evaluation gives the same function and the same gradients (it is
only a different association of one matrix product): "chain" applies the factors to
the activations one after another (as the authors do); "product" multiplies the
(small) weights into one dense weight first and runs a single linear/convolution;
"hybrid" (N >= 3) merges the square factors into one and applies the dense factor and
that one. Their cost differs: the product is cheaper when the layer's fan-in is small
next to the number of output positions (batch x pixels), the chain when it is large.
"auto" (the default) compares the multiply-adds of all three for the actual input
shape on every call; this is plain integer arithmetic on shapes, so it also works
under torch.compile (which specializes on the shapes it sees).

Initialisation: the dense-shaped factor gets PyTorch's default init and the square
factors are random orthogonal matrices. Orthogonal maps preserve norms, so the merged
weight and the layer's outputs have the same statistics as the plain layer's default
init, for every N (a product of N default-initialised factors would shrink instead).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.utils import _pair

FORWARD_ORDERS = ("auto", "chain", "product", "hybrid")


def _check_factor_and_order(factor: int, forward_order: str) -> None:
    if isinstance(factor, bool) or not isinstance(factor, int) or factor < 1:
        raise ValueError(f"factor must be an integer >= 1, got {factor!r}")
    if forward_order not in FORWARD_ORDERS:
        raise ValueError(f"forward_order must be one of {FORWARD_ORDERS}, got {forward_order!r}")


def cheapest_order(factor: int, positions: int, square: int, other: int) -> str:
    """The evaluation order with the fewest multiply-adds for one call.

    ``positions`` is how many vectors the layer maps (batch x output pixels, or rows),
    ``square`` the size of the square factors, ``other`` the other side of the dense
    factor (a conv's fan-in c_in*k*k, a Linear's d_out). The dense map costs the same
    in every order, so in units of ``square**2`` multiply-adds the extra costs are:

    - chain: each of the N-1 square factors on the activations, ``(N-1) * positions``;
    - product: merging all weights, best association, ``(N-2)*min(square, other) +
      other``; then one dense layer;
    - hybrid (N >= 3): merge the square factors into one, ``(N-2) * square``, and apply
      it to the activations, ``positions``.

    Backward passes scale every term by about the same factor, so the choice holds
    for training too. Ties go to the chain, then the hybrid.
    """
    chain = (factor - 1) * positions
    product = (factor - 2) * min(square, other) + other
    hybrid = (factor - 2) * square + positions if factor > 2 else chain
    if product < chain and product < hybrid:
        return "product"
    return "hybrid" if hybrid < chain else "chain"


def _orthogonal_product(factors: list[torch.Tensor], size: int) -> torch.Tensor:
    """``factors[-1] @ ... @ factors[0]`` as a (size x size) matrix (identity if empty)."""
    result = None
    for f in factors:
        m = f.detach().reshape(size, size)
        result = m if result is None else m @ result
    if result is None:
        return torch.eye(size, device=factors[0].device if factors else None)
    return result


class ComposedLinear(nn.Module):
    """A Linear layer trained as a composition of ``factor`` linear maps.

    ``factors[0] .. factors[N-2]`` are (in_features x in_features), applied first;
    ``factors[N-1]`` is (out_features x in_features); ``bias`` is added last.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        factor: int = 2,
        bias: bool = True,
        forward_order: str = "auto",
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        _check_factor_and_order(factor, forward_order)
        kw = {"device": device, "dtype": dtype}
        self.in_features = in_features
        self.out_features = out_features
        self.factor = factor
        self.forward_order = forward_order
        shapes = [(in_features, in_features)] * (factor - 1) + [(out_features, in_features)]
        self.factors = nn.ParameterList([nn.Parameter(torch.empty(s, **kw)) for s in shapes])
        if bias:
            self.bias = nn.Parameter(torch.empty(out_features, **kw))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        *squares, dense = self.factors
        nn.init.kaiming_uniform_(dense, a=math.sqrt(5))  # nn.Linear's default
        for square in squares:
            nn.init.orthogonal_(square)
        if self.bias is not None:
            bound = 1 / math.sqrt(self.in_features) if self.in_features > 0 else 0.0
            nn.init.uniform_(self.bias, -bound, bound)

    def merged_weight(self) -> torch.Tensor:
        """The dense (out_features x in_features) weight; differentiable."""
        if self.factor == 1:
            return self.factors[0]
        # multi_dot picks the cheapest association of the matrix chain.
        return torch.linalg.multi_dot([self.factors[i] for i in range(self.factor - 1, -1, -1)])

    @property
    def weight(self) -> torch.Tensor:
        """The merged weight, read-only: code that reads ``layer.weight`` directly
        (e.g. nn.TransformerEncoderLayer's inference fast path) sees the effective weight.
        Train the ``factors``; writing to this tensor changes nothing."""
        return self.merged_weight()

    def chosen_order(self, x: torch.Tensor) -> str:
        """ "chain", "product" or "hybrid": how forward(x) evaluates the composition."""
        if self.forward_order != "auto":
            return self.forward_order
        rows = x.numel() // max(self.in_features, 1)
        return cheapest_order(self.factor, rows, self.in_features, self.out_features)

    def uses_product(self, x: torch.Tensor) -> bool:
        return self.chosen_order(x) == "product"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        last = self.factor - 1
        if last == 0:
            return F.linear(x, self.factors[0], self.bias)
        order = self.chosen_order(x)
        if order == "product":
            return F.linear(x, self.merged_weight(), self.bias)
        if order == "hybrid" and last > 1:
            squares = torch.linalg.multi_dot([self.factors[i] for i in range(last - 1, -1, -1)])
            return F.linear(F.linear(x, squares), self.factors[last], self.bias)
        for i in range(last):
            x = F.linear(x, self.factors[i])
        return F.linear(x, self.factors[last], self.bias)

    @classmethod
    def from_dense(
        cls,
        module: nn.Linear,
        factor: int = 2,
        forward_order: str = "auto",
        *,
        keep_function: bool = False,
    ) -> ComposedLinear:
        """A composed layer shaped like ``module``, freshly initialised.

        With ``keep_function`` the factors are set so that the merged weight equals
        ``module.weight`` and the bias is copied (to factorize a pretrained layer).
        """
        w = module.weight
        layer = cls(
            module.in_features,
            module.out_features,
            factor,
            bias=module.bias is not None,
            forward_order=forward_order,
            device=w.device,
            dtype=w.dtype,
        )
        layer.train(module.training)
        if keep_function:
            with torch.no_grad():
                # W = F_last @ Q with Q orthogonal  =>  F_last = W @ Q^T.
                q = _orthogonal_product(list(layer.factors[:-1]), module.in_features)
                layer.factors[-1].copy_(w.detach() @ q.to(w).T)
                if module.bias is not None:
                    layer.bias.copy_(module.bias.detach())
        return layer

    def to_dense(self) -> nn.Linear:
        """A plain nn.Linear with the merged weight and the same bias, device and dtype."""
        w = self.factors[-1]
        dense = nn.Linear(
            self.in_features,
            self.out_features,
            bias=self.bias is not None,
            device=w.device,
            dtype=w.dtype,
        )
        with torch.no_grad():
            dense.weight.copy_(self.merged_weight())
            if self.bias is not None:
                dense.bias.copy_(self.bias)
        dense.train(self.training)
        return dense

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"factor={self.factor}, bias={self.bias is not None}, "
            f"forward_order={self.forward_order}"
        )


class ComposedConv2d(nn.Module):
    """A Conv2d layer trained as a k x k convolution followed by ``factor - 1`` 1x1 ones.

    ``factors[0]`` is the (c_out, c_in, k, k) kernel (no bias); ``factors[1..N-1]`` are
    (c_out, c_out, 1, 1) kernels; ``bias`` is added after the whole chain. Grouped
    convolutions are not supported (their weight is not one matrix).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size,
        stride=1,
        padding=0,
        dilation=1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        factor: int = 2,
        forward_order: str = "auto",
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        _check_factor_and_order(factor, forward_order)
        if groups != 1:
            raise ValueError("ComposedConv2d supports groups=1 only (grouped convs stay plain)")
        if padding_mode not in ("zeros", "reflect", "replicate", "circular"):
            raise ValueError(f"unknown padding_mode {padding_mode!r}")
        kw = {"device": device, "dtype": dtype}
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = _pair(kernel_size)
        self.stride = _pair(stride)
        self.dilation = _pair(dilation)
        self.groups = 1
        self.padding_mode = padding_mode
        self.factor = factor
        self.forward_order = forward_order
        if isinstance(padding, str):
            if padding not in ("same", "valid"):
                raise ValueError(f"padding must be 'same', 'valid' or numbers, got {padding!r}")
            if padding == "same" and self.stride != (1, 1):
                raise ValueError("padding='same' needs stride 1")
            self.padding = padding
        else:
            self.padding = _pair(padding)
        kh, kw_ = self.kernel_size
        self.factors = nn.ParameterList(
            [nn.Parameter(torch.empty(out_channels, in_channels, kh, kw_, **kw))]
            + [
                nn.Parameter(torch.empty(out_channels, out_channels, 1, 1, **kw))
                for _ in range(factor - 1)
            ]
        )
        if bias:
            self.bias = nn.Parameter(torch.empty(out_channels, **kw))
        else:
            self.register_parameter("bias", None)
        self._explicit_pad, self._size_offset = self._padding_plan()
        fan_in = in_channels * kh * kw_
        self._fan_in = fan_in
        self.reset_parameters()

    def _padding_plan(self) -> tuple[tuple[int, ...], tuple[int, int]]:
        """F.pad amounts (non-zero padding modes) and per-dim output-size offsets.

        Output size along a dim is ``(size + offset) // stride + 1``.
        """
        pads = []  # (left, right) per spatial dim, in (H, W) order
        for k, d in zip(self.kernel_size, self.dilation, strict=True):
            if self.padding == "same":
                total = d * (k - 1)
                pads.append((total // 2, total - total // 2))
            elif self.padding == "valid":
                pads.append((0, 0))
        if not pads:
            pads = [(p, p) for p in self.padding]
        # F.pad wants the last dim first.
        explicit = tuple(v for pair in reversed(pads) for v in pair)
        offsets = tuple(
            left + right - d * (k - 1) - 1
            for (left, right), k, d in zip(pads, self.kernel_size, self.dilation, strict=True)
        )
        return explicit, offsets

    def reset_parameters(self) -> None:
        kernel, *squares = self.factors
        nn.init.kaiming_uniform_(kernel, a=math.sqrt(5))  # nn.Conv2d's default
        for square in squares:
            nn.init.orthogonal_(square)
        if self.bias is not None:
            fan_in = kernel[0].numel()
            bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0.0
            nn.init.uniform_(self.bias, -bound, bound)

    def merged_weight(self) -> torch.Tensor:
        """The dense (c_out, c_in, k, k) weight; differentiable."""
        kernel = self.factors[0]
        if self.factor == 1:
            return kernel
        mats = [self.factors[i].flatten(1) for i in range(self.factor - 1, 0, -1)]
        mats.append(kernel.flatten(1))
        return torch.linalg.multi_dot(mats).view(kernel.shape)

    @property
    def weight(self) -> torch.Tensor:
        """The merged weight, read-only: code that reads ``layer.weight`` directly
        (e.g. nn.TransformerEncoderLayer's inference fast path) sees the effective weight.
        Train the ``factors``; writing to this tensor changes nothing."""
        return self.merged_weight()

    def output_positions(self, x: torch.Tensor) -> int:
        """batch x output pixels of this layer for input ``x`` (batched or not)."""
        batch = x.shape[0] if x.dim() == 4 else 1
        oh = (x.shape[-2] + self._size_offset[0]) // self.stride[0] + 1
        ow = (x.shape[-1] + self._size_offset[1]) // self.stride[1] + 1
        return batch * oh * ow

    def chosen_order(self, x: torch.Tensor) -> str:
        """ "chain", "product" or "hybrid": how forward(x) evaluates the composition."""
        if self.forward_order != "auto":
            return self.forward_order
        positions = self.output_positions(x)
        return cheapest_order(self.factor, positions, self.out_channels, self._fan_in)

    def uses_product(self, x: torch.Tensor) -> bool:
        return self.chosen_order(x) == "product"

    def _conv(self, x: torch.Tensor, weight: torch.Tensor, bias) -> torch.Tensor:
        if self.padding_mode != "zeros":
            x = F.pad(x, self._explicit_pad, mode=self.padding_mode)
            return F.conv2d(x, weight, bias, self.stride, 0, self.dilation)
        return F.conv2d(x, weight, bias, self.stride, self.padding, self.dilation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        last = self.factor - 1
        if last == 0:
            return self._conv(x, self.factors[0], self.bias)
        order = self.chosen_order(x)
        if order == "product":
            return self._conv(x, self.merged_weight(), self.bias)
        x = self._conv(x, self.factors[0], None)
        if order == "hybrid" and last > 1:
            mats = [self.factors[i].flatten(1) for i in range(last, 0, -1)]
            squares = torch.linalg.multi_dot(mats)
            return F.conv2d(x, squares.view(*squares.shape, 1, 1), self.bias)
        for i in range(1, last):
            x = F.conv2d(x, self.factors[i])
        return F.conv2d(x, self.factors[last], self.bias)

    @classmethod
    def from_dense(
        cls,
        module: nn.Conv2d,
        factor: int = 2,
        forward_order: str = "auto",
        *,
        keep_function: bool = False,
    ) -> ComposedConv2d:
        """A composed layer shaped like ``module``, freshly initialised.

        With ``keep_function`` the factors are set so that the merged weight equals
        ``module.weight`` and the bias is copied (to factorize a pretrained layer).
        """
        w = module.weight
        layer = cls(
            module.in_channels,
            module.out_channels,
            module.kernel_size,
            stride=module.stride,
            padding=module.padding,
            dilation=module.dilation,
            groups=module.groups,
            bias=module.bias is not None,
            padding_mode=module.padding_mode,
            factor=factor,
            forward_order=forward_order,
            device=w.device,
            dtype=w.dtype,
        )
        layer.train(module.training)
        if keep_function:
            with torch.no_grad():
                # W = Q @ K with Q orthogonal  =>  K = Q^T @ W.
                q = _orthogonal_product(list(layer.factors[1:]), module.out_channels)
                kernel = q.to(w).T @ w.detach().flatten(1)
                layer.factors[0].copy_(kernel.view(w.shape))
                if module.bias is not None:
                    layer.bias.copy_(module.bias.detach())
        return layer

    def to_dense(self) -> nn.Conv2d:
        """A plain nn.Conv2d with the merged weight and the same bias, device and dtype."""
        w = self.factors[0]
        dense = nn.Conv2d(
            self.in_channels,
            self.out_channels,
            self.kernel_size,
            stride=self.stride,
            padding=self.padding,
            dilation=self.dilation,
            bias=self.bias is not None,
            padding_mode=self.padding_mode,
            device=w.device,
            dtype=w.dtype,
        )
        with torch.no_grad():
            dense.weight.copy_(self.merged_weight())
            if self.bias is not None:
                dense.bias.copy_(self.bias)
        dense.train(self.training)
        return dense

    def extra_repr(self) -> str:
        s = (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, padding={self.padding}, dilation={self.dilation}"
        )
        if self.padding_mode != "zeros":
            s += f", padding_mode={self.padding_mode}"
        return (
            s + f", bias={self.bias is not None}, factor={self.factor}, "
            f"forward_order={self.forward_order}"
        )
