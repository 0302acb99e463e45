"""SimpleViT (Beyer et al. 2022): patch embedding, fixed 2-D sin-cos positions,
pre-norm transformer blocks, mean pooling, linear head.

Attention is written with plain nn.Linear projections (one qkv, one output
projection) so LoRITa can factorize them like any other Linear; the patch
embedding and the head stay plain (see default_exclude in core.models).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

MAX_TOKENS = 64


def auto_patch_size(image_size: int) -> int:
    """Smallest patch (>1 where possible) giving at most MAX_TOKENS tokens."""
    divisors = [p for p in range(2, image_size) if image_size % p == 0]
    for patch in divisors:
        if (image_size // patch) ** 2 <= MAX_TOKENS:
            return patch
    # Sizes without a fitting divisor: the largest divisor, or single pixels for primes.
    return divisors[-1] if divisors else 1


def sincos_positions(grid: int, dim: int, temperature: float = 10_000.0) -> Tensor:
    """Fixed 2-D sin-cos embedding, shape (grid*grid, dim)."""
    if dim % 4 != 0:
        raise ValueError(f"SimpleViT dim must be a multiple of 4 for sin-cos positions, got {dim}")
    ys, xs = torch.meshgrid(torch.arange(grid), torch.arange(grid), indexing="ij")
    omega = 1.0 / temperature ** (torch.arange(dim // 4) / (dim // 4 - 1 or 1))
    ys = ys.flatten()[:, None] * omega[None, :]
    xs = xs.flatten()[:, None] * omega[None, :]
    return torch.cat((xs.sin(), xs.cos(), ys.sin(), ys.cos()), dim=1)


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        if dim % heads != 0:
            raise ValueError(f"SimpleViT dim ({dim}) must be divisible by heads ({heads})")
        self.heads = heads
        self.scale = 1.0 / math.sqrt(dim // heads)
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        batch, tokens, dim = x.shape
        qkv = self.qkv(x).reshape(batch, tokens, 3, self.heads, dim // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each (batch, heads, tokens, head_dim)
        # Written out (not scaled_dot_product_attention) so ONNX export and the
        # FLOP counter see ordinary matmuls on every backend.
        weights = (q @ k.transpose(-2, -1) * self.scale).softmax(dim=-1)
        out = (weights @ v).transpose(1, 2).reshape(batch, tokens, dim)
        return self.proj(out)


class MLP(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_dim: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = MLP(dim, mlp_dim)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class SimpleViT(nn.Module):
    def __init__(
        self,
        num_classes: int,
        in_channels: int,
        image_size: int,
        *,
        patch_size: int | None = None,
        dim: int = 128,
        depth: int = 4,
        heads: int = 4,
        mlp_dim: int = 256,
    ) -> None:
        super().__init__()
        patch_size = patch_size or auto_patch_size(image_size)
        if image_size % patch_size != 0:
            raise ValueError(
                f"SimpleViT patch_size {patch_size} must divide image_size {image_size}"
            )
        grid = image_size // patch_size
        self.patch_size = patch_size
        self.patch_embed = nn.Conv2d(in_channels, dim, patch_size, stride=patch_size)
        # Not persistent: it is a fixed function of the shape, not a learned weight.
        self.register_buffer("pos_embed", sincos_positions(grid, dim), persistent=False)
        self.blocks = nn.Sequential(*(Block(dim, heads, mlp_dim) for _ in range(depth)))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.patch_embed(x).flatten(2).transpose(1, 2)  # (batch, tokens, dim)
        x = self.blocks(x + self.pos_embed)
        return self.head(self.norm(x).mean(dim=1))
