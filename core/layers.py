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
shape on every call (work on the activations weighted as dearer than merging weights,
see ``cheapest_order``); this is plain arithmetic on shapes, so it also works under
torch.compile (which specializes on the shapes it sees).

Initialisation (``init``):

- "random" (training from scratch): the dense-shaped factor gets PyTorch's default
  init and the square factors are random orthogonal matrices. Orthogonal maps preserve
  norms, so the merged weight and the layer's outputs have the same statistics as the
  plain layer's default init, for every N (a product of N default-initialised factors
  would shrink instead).
- "pretrained" (starting from a trained layer): the balanced exact split of the
  layer's weight W = U S V^T (thin SVD, float64). Every factor gets the N-th root of
  the spectrum: the square factors are V S^(1/N) V^T when they act before the dense
  one (Linear: on its input space) and U S^(1/N) U^T when they act after it (Conv2d:
  on its output channels); the dense factor is U S^(1/N) V^T. The product is W, and
  the sum of squared factor norms is N * sum(s_i^(2/N)), the smallest over all
  factorisations (the Schatten-(2/N) quasi-norm that LoRITa's weight decay
  penalises), so fine-tuning starts where the theory describes. Directions with a
  zero singular value start at zero in every factor.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.utils import _pair

FORWARD_ORDERS = ("auto", "chain", "product", "hybrid")
FACTOR_INITS = ("random", "pretrained")


def _check_factor_and_order(factor: int, forward_order: str) -> None:
    if isinstance(factor, bool) or not isinstance(factor, int) or factor < 1:
        raise ValueError(f"factor must be an integer >= 1, got {factor!r}")
    if forward_order not in FORWARD_ORDERS:
        raise ValueError(f"forward_order must be one of {FORWARD_ORDERS}, got {forward_order!r}")


def check_init(init: str) -> None:
    if init not in FACTOR_INITS:
        raise ValueError(f"init must be one of {FACTOR_INITS}, got {init!r}")


# What one multiply-add of a square factor applied to the activations costs, relative
# to one multiply-add of merging weights. Applying a factor streams the batch's
# activations through memory (and keeps them for the backward pass); merging touches
# only the weights. Measured on a CPU with VGG16's convolutions at batch 32 (training
# step, per layer): about 1.8 at 8x8 pixels and 256 channels, about 1.1 at 4x4 and 512.
ACTIVATION_MAC_WEIGHT = 1.5


def order_extra_costs(
    factor: int, positions: int, square: int, other: int, activation_weight: float = 1.0
) -> dict[str, float]:
    """What each evaluation order adds to the dense map, in multiply-adds, for one call.

    ``positions`` is how many vectors the layer maps (batch x output pixels, or rows),
    ``square`` the size of the square factors, ``other`` the other side of the dense
    factor (a conv's fan-in c_in*k*k, a Linear's d_out). The dense map itself costs
    ``positions * square * other`` in every order; the extras, in units of ``square**2``:

    - chain: each of the N-1 square factors on the activations, ``(N-1) * positions``;
    - product: merging all weights, best association, ``(N-2)*min(square, other) +
      other``; then one dense layer;
    - hybrid (only for N >= 3): merge the square factors into one, ``(N-2) * square``,
      and apply it to the activations, ``positions``.

    Work on the activations is multiplied by ``activation_weight`` (1 counts plain
    multiply-adds). Backward passes scale every term by about the same factor (two
    products per forward product).
    """
    on_activations = activation_weight * positions
    unit = square**2
    extra = {
        "chain": (factor - 1) * on_activations * unit,
        "product": ((factor - 2) * min(square, other) + other) * unit,
    }
    if factor > 2:
        extra["hybrid"] = ((factor - 2) * square + on_activations) * unit
    return extra


def cheapest_order(factor: int, positions: int, square: int, other: int) -> str:
    """The evaluation order with the fewest weighted multiply-adds for one call:
    ``order_extra_costs`` with work on the activations weighted by
    ``ACTIVATION_MAC_WEIGHT``, so the choice holds for training too. Ties go to the
    chain, then the hybrid."""
    extra = order_extra_costs(factor, positions, square, other, ACTIVATION_MAC_WEIGHT)
    chain, product = extra["chain"], extra["product"]
    hybrid = extra.get("hybrid", chain)
    if product < chain and product < hybrid:
        return "product"
    return "hybrid" if hybrid < chain else "chain"


def balanced_split(
    matrix: torch.Tensor, factor: int, square_side: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """The balanced exact split of a (m x n) ``matrix`` into ``factor`` maps, in float64.

    Returns ``(dense, square)``: the dense (m x n) factor ``U S^(1/N) V^T`` and the one
    square factor repeated N-1 times, ``V S^(1/N) V^T`` (n x n) when ``square_side`` is
    "input" (the squares act before the dense map) or ``U S^(1/N) U^T`` (m x m) when it
    is "output" (they act after it). With the thin SVD (rank r = min(m, n)) the inner
    ``V^T V`` / ``U^T U`` are identities, so the product is exactly ``matrix`` for every
    shape, and every factor's squared norm is ``sum(s_i^(2/N))``.

    float64 because the N-th root of small singular values and the product of N factors
    lose digits fast in float32. The SVD runs on the CPU unless the matrix is on CUDA:
    not every accelerator has float64, and one SVD per layer is cheap next to training.
    """
    if square_side not in ("input", "output"):
        raise ValueError(f"square_side must be 'input' or 'output', got {square_side!r}")
    device = matrix.device if matrix.device.type == "cuda" else torch.device("cpu")
    w = matrix.detach().to(device=device, dtype=torch.float64)
    u, s, vh = torch.linalg.svd(w, full_matrices=False)
    root = s.pow(1.0 / factor)  # zero singular values stay zero
    dense = (u * root) @ vh
    basis = vh.mT if square_side == "input" else u
    square = (basis * root) @ basis.mT
    return dense, square


def _pointwise_as_matmul(x: torch.Tensor, weight: torch.Tensor, bias) -> torch.Tensor:
    """``F.conv2d(x, weight, bias)`` for a 1x1 ``weight`` and a batched ``x``, as one
    (batch*H*W, C_in) x (C_in, C_out) product; the result has ``x``'s memory format."""
    batch, channels, height, width = x.shape
    rows = x.permute(0, 2, 3, 1).reshape(-1, channels)  # a view when x is channels_last
    out = F.linear(rows, weight.flatten(1), bias).view(batch, height, width, -1)
    out = out.permute(0, 3, 1, 2)  # channels_last strides
    if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        return out
    return out.contiguous()


def _placement(tensor: torch.Tensor) -> dict:
    return {"device": tensor.device, "dtype": tensor.dtype}


class ComposedLayer(nn.Module):
    """What ComposedLinear and ComposedConv2d share: N factors, one dense-shaped (the
    plain layer's weight shape) and N-1 square ones, with the bias after all of them.

    A subclass creates its parameters with ``_create_parameters`` and sets ``_fan_in``;
    it says which plain layer it stands for (``_plain_type``, whose constructor takes
    the same ``_hyperparameters``), on which side of the dense factor the squares act
    (``_squares_first``), how one factor is applied to activations
    (``_apply_dense``/``_apply_square``), how many vectors a call maps
    (``output_positions``) and the sizes that price the orders (``order_sizes``).
    Every factor is used as a matrix through ``flatten(1)`` (a no-op for Linear).
    """

    _squares_first: bool
    _plain_type: type[nn.Module]

    def __init__(self, factor: int, forward_order: str) -> None:
        super().__init__()
        _check_factor_and_order(factor, forward_order)

    def _create_parameters(
        self, factor: int, forward_order: str, shapes: list, bias_size: int, bias: bool, kw
    ) -> None:
        """Record the options and create the (uninitialised) factors and bias."""
        self.factor = factor
        self.forward_order = forward_order
        self.factors = nn.ParameterList([nn.Parameter(torch.empty(s, **kw)) for s in shapes])
        if bias:
            self.bias = nn.Parameter(torch.empty(bias_size, **kw))
        else:
            self.register_parameter("bias", None)

    # -- which factor is which --------------------------------------------------------

    @property
    def _dense_index(self) -> int:
        return self.factor - 1 if self._squares_first else 0

    @property
    def _square_indices(self) -> range:
        return range(self.factor - 1) if self._squares_first else range(1, self.factor)

    def _product(self, indices: range) -> torch.Tensor:
        """Matrix product of the factors at ``indices`` (application order); needs >= 2."""
        # multi_dot picks the cheapest association of the matrix chain.
        return torch.linalg.multi_dot([self.factors[i].flatten(1) for i in reversed(indices)])

    # -- initialisation -----------------------------------------------------------------

    def reset_parameters(self) -> None:
        """The "random" init: the plain layer's default for the dense factor and the
        bias, random orthogonal square factors (see the module docstring)."""
        nn.init.kaiming_uniform_(self.factors[self._dense_index], a=math.sqrt(5))
        for i in self._square_indices:
            nn.init.orthogonal_(self.factors[i])
        if self.bias is not None:
            bound = 1 / math.sqrt(self._fan_in) if self._fan_in > 0 else 0.0
            nn.init.uniform_(self.bias, -bound, bound)

    def load_balanced_split(self, weight: torch.Tensor) -> None:
        """The "pretrained" init: set the factors to the balanced exact split of the
        plain layer's ``weight`` (computed in float64, stored in this layer's dtype).
        ``factor == 1`` copies ``weight`` as it is."""
        dense_factor = self.factors[self._dense_index]
        with torch.no_grad():
            if self.factor == 1:
                dense_factor.copy_(weight.detach().view(dense_factor.shape))
                return
            side = "input" if self._squares_first else "output"
            dense, square = balanced_split(weight.flatten(1), self.factor, side)
            dense_factor.copy_(dense.view(dense_factor.shape))
            for i in self._square_indices:
                self.factors[i].copy_(square.view(self.factors[i].shape))

    # -- the function -----------------------------------------------------------------

    def merged_weight(self) -> torch.Tensor:
        """The dense weight, shaped as the plain layer's; differentiable."""
        if self.factor == 1:
            return self.factors[0]
        return self._product(range(self.factor)).view(self.factors[self._dense_index].shape)

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
        square, other = self.order_sizes
        return cheapest_order(self.factor, self.output_positions(x), square, other)

    def uses_product(self, x: torch.Tensor) -> bool:
        return self.chosen_order(x) == "product"

    def _stages(self, order: str) -> list[tuple]:
        """(apply, weight) pairs in the order they act on the activations."""
        dense = (self._apply_dense, self.factors[self._dense_index])
        indices = self._square_indices
        if order == "hybrid" and len(indices) > 1:
            shape = self.factors[indices[0]].shape
            squares = [(self._apply_square, self._product(indices).view(shape))]
        else:
            squares = [(self._apply_square, self.factors[i]) for i in indices]
        return [*squares, dense] if self._squares_first else [dense, *squares]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.factor == 1:
            return self._apply_dense(x, self.factors[0], self.bias)
        order = self.chosen_order(x)
        if order == "product":
            return self._apply_dense(x, self.merged_weight(), self.bias)
        stages = self._stages(order)
        for i, (apply, weight) in enumerate(stages):
            x = apply(x, weight, self.bias if i == len(stages) - 1 else None)
        return x

    # -- plain layer round trip -------------------------------------------------------

    @classmethod
    def from_dense(
        cls,
        module: nn.Module,
        factor: int = 2,
        forward_order: str = "auto",
        *,
        init: str = "random",
    ) -> ComposedLayer:
        """A composed layer shaped like the plain ``module`` (same device, dtype, mode).

        ``init="random"`` initialises it fresh, for training from scratch;
        ``init="pretrained"`` sets the factors to the balanced exact split of
        ``module.weight`` and copies the bias, so the layer computes what ``module``
        does (to start from a trained layer).
        """
        check_init(init)
        layer = cls(
            **cls._hyperparameters(module),
            factor=factor,
            forward_order=forward_order,
            **_placement(module.weight),
        )
        layer.train(module.training)
        if init == "pretrained":
            layer.load_balanced_split(module.weight)
            if module.bias is not None:
                with torch.no_grad():
                    layer.bias.copy_(module.bias.detach())
        return layer

    def to_dense(self) -> nn.Module:
        """The plain layer with the merged weight and the same bias, device and dtype."""
        dense = self._plain_type(**self._hyperparameters(self), **_placement(self.factors[0]))
        with torch.no_grad():
            dense.weight.copy_(self.merged_weight())
            if self.bias is not None:
                dense.bias.copy_(self.bias)
        dense.train(self.training)
        return dense


class ComposedLinear(ComposedLayer):
    """A Linear layer trained as a composition of ``factor`` linear maps.

    ``factors[0] .. factors[N-2]`` are (in_features x in_features), applied first;
    ``factors[N-1]`` is (out_features x in_features); ``bias`` is added last.
    """

    _squares_first = True
    _plain_type = nn.Linear

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
        super().__init__(factor, forward_order)
        kw = {"device": device, "dtype": dtype}
        self.in_features = in_features
        self.out_features = out_features
        shapes = [(in_features, in_features)] * (factor - 1) + [(out_features, in_features)]
        self._create_parameters(factor, forward_order, shapes, out_features, bias, kw)
        self._fan_in = in_features
        self.reset_parameters()

    @property
    def order_sizes(self) -> tuple[int, int]:
        """(square, other): the square factors' size and the dense factor's other side."""
        return self.in_features, self.out_features

    def output_positions(self, x: torch.Tensor) -> int:
        """How many vectors (rows) this layer maps for input ``x``."""
        return x.numel() // max(self.in_features, 1)

    def _apply_dense(self, x: torch.Tensor, weight: torch.Tensor, bias) -> torch.Tensor:
        return F.linear(x, weight, bias)

    _apply_square = _apply_dense

    @staticmethod
    def _hyperparameters(layer: nn.Module) -> dict:
        """Constructor arguments shared by nn.Linear and this class (same names)."""
        return {
            "in_features": layer.in_features,
            "out_features": layer.out_features,
            "bias": layer.bias is not None,
        }

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"factor={self.factor}, bias={self.bias is not None}, "
            f"forward_order={self.forward_order}"
        )


class ComposedConv2d(ComposedLayer):
    """A Conv2d layer trained as a k x k convolution followed by ``factor - 1`` 1x1 ones.

    ``factors[0]`` is the (c_out, c_in, k, k) kernel (no bias); ``factors[1..N-1]`` are
    (c_out, c_out, 1, 1) kernels; ``bias`` is added after the whole chain. Grouped
    convolutions are not supported (their weight is not one matrix).
    """

    _squares_first = False
    _plain_type = nn.Conv2d

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
        super().__init__(factor, forward_order)
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
        if isinstance(padding, str):
            if padding not in ("same", "valid"):
                raise ValueError(f"padding must be 'same', 'valid' or numbers, got {padding!r}")
            if padding == "same" and self.stride != (1, 1):
                raise ValueError("padding='same' needs stride 1")
            self.padding = padding
        else:
            self.padding = _pair(padding)
        kh, kw_ = self.kernel_size
        shapes = [(out_channels, in_channels, kh, kw_)]
        shapes += [(out_channels, out_channels, 1, 1)] * (factor - 1)
        self._create_parameters(factor, forward_order, shapes, out_channels, bias, kw)
        self._explicit_pad, self._size_offset = self._padding_plan()
        self._fan_in = in_channels * kh * kw_
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

    @property
    def order_sizes(self) -> tuple[int, int]:
        """(square, other): the square factors' size and the dense factor's fan-in."""
        return self.out_channels, self._fan_in

    def output_positions(self, x: torch.Tensor) -> int:
        """batch x output pixels of this layer for input ``x`` (batched or not)."""
        batch = x.shape[0] if x.dim() == 4 else 1
        oh = (x.shape[-2] + self._size_offset[0]) // self.stride[0] + 1
        ow = (x.shape[-1] + self._size_offset[1]) // self.stride[1] + 1
        return batch * oh * ow

    def _apply_dense(self, x: torch.Tensor, weight: torch.Tensor, bias) -> torch.Tensor:
        """The k x k convolution, with this layer's padding mode."""
        if self.padding_mode != "zeros":
            x = F.pad(x, self._explicit_pad, mode=self.padding_mode)
            return F.conv2d(x, weight, bias, self.stride, 0, self.dilation)
        return F.conv2d(x, weight, bias, self.stride, self.padding, self.dilation)

    def _apply_square(self, x: torch.Tensor, weight: torch.Tensor, bias) -> torch.Tensor:
        """A 1x1 convolution (stride 1): the same channel map at every pixel.

        On the CPU it runs as one matrix product over all batch x pixel rows: at the
        few pixels of a deep layer (2x2, 4x4) the convolution kernel is about half as
        fast as that product, at larger sizes they are even. Elsewhere (cuDNN) the
        convolution is as fast and keeps the memory format as it is.
        """
        if x.device.type != "cpu" or x.dim() != 4:
            return F.conv2d(x, weight, bias)
        return _pointwise_as_matmul(x, weight, bias)

    @staticmethod
    def _hyperparameters(layer: nn.Module) -> dict:
        """Constructor arguments shared by nn.Conv2d and this class (same names)."""
        return {
            "in_channels": layer.in_channels,
            "out_channels": layer.out_channels,
            "kernel_size": layer.kernel_size,
            "stride": layer.stride,
            "padding": layer.padding,
            "dilation": layer.dilation,
            "groups": layer.groups,
            "bias": layer.bias is not None,
            "padding_mode": layer.padding_mode,
        }

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
