"""The token part of TransBTS: a learned, resizable positional embedding and a pre-norm
transformer layer whose attention runs through ``torch.nn.functional.scaled_dot_product_attention``.

Why not MONAI's ``TransformerBlock`` / ``SABlock`` (MONAI 1.4) with ``use_flash_attention=True``?
It would be the first choice, but in MONAI 1.4 it is not equivalent to the official TransBTS
layer, for four reasons:

1. ``SABlock.forward`` passes ``dropout_p=self.dropout_rate`` to SDPA whatever ``self.training``
   is, so attention dropout stays on in ``eval()`` -- the very bug we must fix in TransBTS.
2. ``TransformerBlock`` always builds ``norm_cross_attn`` and ``cross_attn`` (a
   ``CrossAttentionBlock``, ~1.05 M parameters at width 512) even with
   ``with_cross_attention=False``; four layers would add ~4.2 M parameters that are never used
   (the same defect we remove from the official code) and break DDP without
   ``find_unused_parameters``.
3. It has one ``dropout_rate`` for everything; the official layer uses ``attn_dropout_rate`` on the
   attention weights and after the output projection, and ``dropout_rate`` on the residual branch
   (``PreNormDrop``) and in the MLP.
4. The official attention branch applies two dropouts in a row (``proj_drop`` then the
   ``PreNormDrop`` dropout); ``SABlock`` has one.

The MLP does match: MONAI's :class:`~monai.networks.blocks.MLPBlock` in ``"vit"`` dropout mode is
exactly the official ``FeedForward`` (Linear → GELU → Dropout → Linear → Dropout), so it is reused.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from monai.networks.blocks import MLPBlock
from torch import nn


class LearnedPositionalEmbedding(nn.Module):
    r"""Learned positional embedding :math:`P \in \mathbb{R}^{1 \times N \times C}` for a token grid.

    Tokens come from a feature map of grid size :math:`(g_d, g_h, g_w)` flattened in C order
    (token index :math:`(d\,g_h + h)\,g_w + w`, as the official ``permute(0, 2, 3, 4, 1).view``),
    so :math:`N = g_d g_h g_w`.  For another grid size, :math:`P` is reshaped to
    :math:`(1, C, g_d, g_h, g_w)`, resized with trilinear interpolation
    (``align_corners=False``) and flattened again.  Initialised to zeros, as the official.

    Args:
        grid_size: token grid the embedding is learned for, e.g. ``(16, 16, 16)``.
        embedding_dim: token width :math:`C`.
    """

    def __init__(self, grid_size: Sequence[int], embedding_dim: int) -> None:
        super().__init__()
        self.grid_size: tuple[int, int, int] = tuple(int(g) for g in grid_size)  # type: ignore[assignment]
        if len(self.grid_size) != 3 or min(self.grid_size) < 1:
            raise ValueError(f"grid_size must be three positive ints, got {grid_size!r}")
        num_tokens = self.grid_size[0] * self.grid_size[1] * self.grid_size[2]
        self.embedding = nn.Parameter(torch.zeros(1, num_tokens, embedding_dim))

    def resized(self, grid_size: Sequence[int]) -> torch.Tensor:
        """The embedding for a token grid of ``grid_size``, shape ``(1, prod(grid_size), C)``."""
        grid = tuple(int(g) for g in grid_size)
        if grid == self.grid_size:
            return self.embedding
        channels = self.embedding.shape[-1]
        volume = self.embedding.transpose(1, 2).reshape(1, channels, *self.grid_size)
        volume = F.interpolate(volume, size=grid, mode="trilinear", align_corners=False)
        return volume.flatten(2).transpose(1, 2)

    def forward(self, tokens: torch.Tensor, grid_size: Sequence[int]) -> torch.Tensor:
        """``tokens + P`` for ``tokens`` of shape ``(B, prod(grid_size), C)``."""
        return tokens + self.resized(grid_size).to(tokens.dtype)


class SelfAttention(nn.Module):
    r"""Multi-head self-attention on SDPA, parameterised as the official ``SelfAttention``.

    .. math::
        [Q, K, V] = X W_{qkv}\ (\text{no bias}),\quad
        A_h = \operatorname{Dropout}_{p_a}\!\left(\operatorname{softmax}\!\left(
              \frac{Q_h K_h^\top}{\sqrt{C/H}}\right)\right) V_h,\quad
        Y = \operatorname{Dropout}_{p_a}\!\left([A_1 \dots A_H] W_o + b_o\right)

    Both dropouts (rate ``attn_dropout_rate`` = :math:`p_a`) are active only in ``train()``.
    """

    def __init__(self, embedding_dim: int, num_heads: int, attn_dropout_rate: float) -> None:
        super().__init__()
        if embedding_dim % num_heads != 0:
            raise ValueError(f"embedding_dim ({embedding_dim}) must be divisible by num_heads ({num_heads})")
        self.num_heads = num_heads
        self.attn_dropout_rate = float(attn_dropout_rate)
        self.qkv = nn.Linear(embedding_dim, 3 * embedding_dim, bias=False)
        self.out_proj = nn.Linear(embedding_dim, embedding_dim)
        self.output_dropout = nn.Dropout(attn_dropout_rate)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        batch, length, channels = tokens.shape
        qkv = self.qkv(tokens).reshape(batch, length, 3, self.num_heads, channels // self.num_heads)
        query, key, value = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, H, N, C/H)
        dropout_p = self.attn_dropout_rate if self.training else 0.0
        attended = F.scaled_dot_product_attention(query, key, value, dropout_p=dropout_p)
        attended = attended.transpose(1, 2).reshape(batch, length, channels)
        return self.output_dropout(self.out_proj(attended))


class PreNormTransformerLayer(nn.Module):
    r"""One official TransBTS transformer layer (pre-norm):

    .. math::
        X' = X + \operatorname{Dropout}_{p}\big(\operatorname{SelfAttention}(\operatorname{LN}_1(X))\big),
        \qquad
        X'' = X' + \operatorname{MLP}(\operatorname{LN}_2(X'))

    with :math:`\operatorname{MLP}(Z) = \operatorname{Dropout}_p(\operatorname{Dropout}_p(
    \operatorname{GELU}(Z W_1 + b_1)) W_2 + b_2)` (MONAI ``MLPBlock``, ``"vit"`` mode) and
    :math:`p` = ``dropout_rate``.  See the module docstring for why MONAI's ``TransformerBlock``
    is not used.
    """

    def __init__(
        self,
        embedding_dim: int,
        num_heads: int,
        mlp_dim: int,
        dropout_rate: float,
        attn_dropout_rate: float,
    ) -> None:
        super().__init__()
        self.attention_norm = nn.LayerNorm(embedding_dim)
        self.attention = SelfAttention(embedding_dim, num_heads, attn_dropout_rate)
        self.attention_dropout = nn.Dropout(dropout_rate)
        self.mlp_norm = nn.LayerNorm(embedding_dim)
        self.mlp = MLPBlock(embedding_dim, mlp_dim, dropout_rate, act="GELU", dropout_mode="vit")

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        tokens = tokens + self.attention_dropout(self.attention(self.attention_norm(tokens)))
        return tokens + self.mlp(self.mlp_norm(tokens))
