"""TransBTS (Wang et al., MICCAI 2021), faithful to the official ``TransBTS_downsample8x_skipconnection``.

See :class:`TransBTS` for the architecture, the parameter arithmetic and the fixes.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.utils import ensure_tuple_rep
from torch import nn
from torch.utils.checkpoint import checkpoint

from .blocks import ENCODER_NORM_GROUPS, ResidualConvBnRelu, UpCat, conv_bn_relu, encoder_residual_block
from .transformer import LearnedPositionalEmbedding, PreNormTransformerLayer

#: Parameters of the official model as built by ``TransBTS(dataset="brats")`` (32.99 M).
OFFICIAL_NUM_PARAMS = 32_987_588
#: Parameters the official model builds but never uses (``linear_encoding`` + ``pre_head_ln``).
OFFICIAL_UNUSED_PARAMS = 262_656 + 1_024
#: Official parameters less the unused ones: the reference for the default configuration.
OFFICIAL_USED_PARAMS = OFFICIAL_NUM_PARAMS - OFFICIAL_UNUSED_PARAMS


class TransBTS(nn.Module):
    r"""TransBTS for 3-D multimodal brain-tumour segmentation; returns **logits** ``(B, out_channels, D, H, W)``.

    Architecture (defaults: input 4×128³ = flair, t1ce, t1, t2; :math:`b` = ``base_channels`` = 16,
    :math:`E` = ``embedding_dim`` = 512):

    * **CNN encoder** -- 3×3×3 conv ``in_channels → b`` + ``Dropout3d(init_dropout_rate)``, then four
      stages of GroupNorm(8) pre-activation residual blocks (MONAI SegResNet ``ResBlock``),
      1, 2, 2 and 4 blocks at widths :math:`b, 2b, 4b, 8b` (16, 32, 64, 128), separated by stride-2
      3×3×3 convolutions: downsampling ×8.  The outputs of the first three stages are the skips.
    * **Tokens** -- BN → ReLU → 3×3×3 conv :math:`8b \to E` on the ×8 map, flattened to
      :math:`N = (D/8)(H/8)(W/8)` tokens (4096 at 128³) plus a learned positional embedding sized
      from ``img_size`` (:math:`(\text{img\_size}/8)^3` tokens) and ``Dropout(dropout_rate)``.
    * **Transformer** -- ``num_layers`` (4) pre-norm layers, ``num_heads`` (8) heads, MLP width
      ``mlp_dim`` (4096), GELU; dropout ``dropout_rate`` (0.1) on the attention branch and in the
      MLP, ``attn_dropout_rate`` (0.1) on the attention weights and after the output projection
      (:class:`~robustlabel.networks.transformer.PreNormTransformerLayer`, attention through SDPA).
    * **Decoder** -- tokens back to a :math:`E\times D/8\times H/8\times W/8` map; conv-BN-ReLU
      :math:`E \to 8b`, conv-BN-ReLU :math:`8b \to 8b`, a BN residual block (official
      ``EnBlock8_1``/``EnBlock8_2``); three stages of 1×1 conv, 2×2×2 stride-2 transposed conv,
      concatenation with the skip, 1×1 fuse conv and a BN residual block (official
      ``DeUp_Cat`` + ``DeBlock``) at widths :math:`4b, 2b, b`; 1×1 conv :math:`b \to`
      ``out_channels``.  The official decoder widths are :math:`E/4, E/8, E/16, E/32`, equal to
      :math:`8b, 4b, 2b, b` only when :math:`E = 32b`; here they follow ``base_channels`` so that
      ``embedding_dim`` can be chosen freely (identical at the defaults).

    Cost: about 325 G multiply-accumulates per 4×128³ crop (official figure; 325.4 G measured on
    this implementation with ``torch.utils.flop_counter.FlopCounterMode``, attention included).

    **Fixes relative to the official code**

    1. No softmax inside: the official ``BTS.decode`` ends in ``nn.Softmax(dim=1)`` and its
       ``predict`` applies softmax again; this model returns logits.
    2. Dropout respects ``eval()``: the official ``InitConv`` calls ``F.dropout3d(y, 0.2)`` with the
       default ``training=True``, so 20 % of the first-layer channels are zeroed at inference as
       well; here it is an ``nn.Dropout3d`` module.
    3. Unused layers left out (see the arithmetic below): ``linear_encoding`` is only called when
       ``conv_patch_representation=False``, and ``pre_head_ln``'s output is discarded --
       ``decode`` reads the transformer output from the intermediate dict (``intmd_x["7"]``, the last
       layer's output *before* ``pre_head_ln``), so the final LayerNorm never influences the output
       and never gets a gradient.  Faithfully to what the official network computes, there is no
       final LayerNorm.  The unused ``nn.Softmax`` (no parameters) is gone too.
    4. The positional embedding is sized from ``img_size`` instead of the hard-coded
       ``torch.zeros(1, 4096, 512)`` (which ignored ``img_dim`` and ``embedding_dim``), and it is
       trilinearly interpolated for inputs of another size, so the network runs on any size
       divisible by 8 (e.g. under ``sliding_window_inference``).  The official decoder reshapes
       tokens to a cube of ``img_dim/8``; here the actual ``(D/8, H/8, W/8)`` is used.
    5. Not carried over: the ``"fixed"`` positional encoding (broken: it indexes ``pe`` with the
       *batch* size and has only 512 positions) and ``conv_patch_representation=False`` (broken:
       it unfolds 2×2×2 patches into 512 tokens but adds a 4096-token embedding).  The auxiliary
       outputs the official ``forward`` collects and then discards are not computed.

    **Parameter arithmetic** (default configuration)

    * Official total (``TransBTS(dataset="brats")``): 32,987,588 ≈ 32.99 M
      (CNN encoder ``Unet`` 4,402,320; ``conv_x`` + ``bn`` 1,770,240; positional embedding
      4096·512 = 2,097,152; transformer 4 × 5,250,048 = 21,000,192 (per layer 3·512² qkv +
      512² + 512 proj + 2·512·4096 + 4096 + 512 MLP + 4·512 two LNs); decoder incl. ``endconv``
      3,454,004; ``linear_encoding`` + ``pre_head_ln`` 263,680).
    * Built but unused: ``linear_encoding = nn.Linear(128·4, 512)``: 512·512 + 512 = 262,656;
      ``pre_head_ln = nn.LayerNorm(512)``: 2·512 = 1,024; total 263,680.
    * Official less unused: 32,987,588 − 263,680 = **32,723,908** (``OFFICIAL_USED_PARAMS``).
    * This model: 32,722,468 = 32,723,908 − 1,440, because MONAI's ``ResBlock`` has no
      convolution bias: 2 convs × (16 + 2·32 + 2·64 + 4·128) channels = 1,440 (−0.004 %).

    Args:
        in_channels: input modalities (4: flair, t1ce, t1, t2).
        out_channels: classes (4: background, necrosis/NET, oedema, enhancing -- contiguous labels).
        img_size: training crop size (int or 3 ints), each divisible by 8; sets the learned
            positional embedding to :math:`\prod(\text{img\_size}/8)` tokens.
        base_channels: encoder width :math:`b` (16); divisible by 8 for ``GroupNorm(8)``.
        embedding_dim: token width :math:`E` (512); divisible by ``num_heads``.
        num_layers: transformer layers (4).
        num_heads: attention heads (8).
        mlp_dim: hidden width of the transformer MLP (4096).
        dropout_rate: dropout after the positional embedding, on the attention branch and in the MLP.
        attn_dropout_rate: dropout on the attention weights and after the attention projection.
        init_dropout_rate: channel dropout after the first convolution (official ``InitConv``: 0.2).
        gradient_checkpointing: recompute each transformer layer in the backward pass
            (``torch.utils.checkpoint``, ``use_reentrant=False``) to save activation memory.

    Raises:
        ValueError: for an invalid argument (named in the message), and in ``forward`` for an input
            that is not ``(B, in_channels, D, H, W)`` with ``D, H, W`` divisible by 8.
    """

    #: Residual blocks per encoder stage, as the official ``Unet`` (EnBlock1, 2_x, 3_x, 4_x).
    ENCODER_BLOCKS: tuple[int, int, int, int] = (1, 2, 2, 4)
    #: Total downsampling of the CNN encoder (three stride-2 convolutions).
    DOWNSAMPLING = 8

    def __init__(
        self,
        in_channels: int = 4,
        out_channels: int = 4,
        img_size: int | Sequence[int] = 128,
        base_channels: int = 16,
        embedding_dim: int = 512,
        num_layers: int = 4,
        num_heads: int = 8,
        mlp_dim: int = 4096,
        dropout_rate: float = 0.1,
        attn_dropout_rate: float = 0.1,
        init_dropout_rate: float = 0.2,
        gradient_checkpointing: bool = False,
    ) -> None:
        super().__init__()
        self.img_size: tuple[int, int, int] = tuple(int(s) for s in ensure_tuple_rep(img_size, 3))  # type: ignore[assignment]
        _check_arguments(
            in_channels=in_channels,
            out_channels=out_channels,
            img_size=self.img_size,
            base_channels=base_channels,
            embedding_dim=embedding_dim,
            num_layers=num_layers,
            num_heads=num_heads,
            mlp_dim=mlp_dim,
            rates={
                "dropout_rate": dropout_rate,
                "attn_dropout_rate": attn_dropout_rate,
                "init_dropout_rate": init_dropout_rate,
            },
        )
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.embedding_dim = embedding_dim
        self.gradient_checkpointing = bool(gradient_checkpointing)
        widths = [base_channels * 2**level for level in range(len(self.ENCODER_BLOCKS))]  # b, 2b, 4b, 8b

        # CNN encoder
        self.init_conv = nn.Conv3d(in_channels, base_channels, kernel_size=3, padding=1)
        self.init_dropout = nn.Dropout3d(init_dropout_rate)
        stages: list[nn.Module] = []
        for level, (width, num_blocks) in enumerate(zip(widths, self.ENCODER_BLOCKS)):
            down = [] if level == 0 else [nn.Conv3d(widths[level - 1], width, kernel_size=3, stride=2, padding=1)]
            stages.append(nn.Sequential(*down, *(encoder_residual_block(width) for _ in range(num_blocks))))
        self.encoder_stages = nn.ModuleList(stages)

        # tokens and transformer
        self.token_projection = nn.Sequential(
            nn.BatchNorm3d(widths[-1]),
            nn.ReLU(inplace=True),
            nn.Conv3d(widths[-1], embedding_dim, kernel_size=3, padding=1),
        )
        grid = [s // self.DOWNSAMPLING for s in self.img_size]
        self.position_embedding = LearnedPositionalEmbedding(grid, embedding_dim)
        self.embedding_dropout = nn.Dropout(dropout_rate)
        self.transformer_layers = nn.ModuleList(
            PreNormTransformerLayer(embedding_dim, num_heads, mlp_dim, dropout_rate, attn_dropout_rate)
            for _ in range(num_layers)
        )

        # decoder
        self.token_reduction = nn.Sequential(
            conv_bn_relu(embedding_dim, widths[-1]),
            conv_bn_relu(widths[-1], widths[-1]),
            ResidualConvBnRelu(widths[-1]),
        )
        self.decoder_stages = nn.ModuleList(UpCat(widths[i], widths[i - 1]) for i in range(len(widths) - 1, 0, -1))
        self.output_conv = nn.Conv3d(base_channels, out_channels, kernel_size=1)

    def check_input(self, x: torch.Tensor) -> None:
        """Raise ``ValueError`` unless ``x`` is ``(B, in_channels, D, H, W)`` with ``D, H, W`` divisible by 8."""
        shape = tuple(x.shape)
        if x.ndim != 5 or shape[1] != self.in_channels:
            raise ValueError(f"TransBTS expects input of shape (B, {self.in_channels}, D, H, W); got {shape}")
        if any(size % self.DOWNSAMPLING for size in shape[2:]):
            raise ValueError(
                f"TransBTS needs every spatial size divisible by {self.DOWNSAMPLING} "
                f"(three stride-2 downsamplings); got input shape {shape}"
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, out_channels, D, H, W)`` for ``x`` of shape ``(B, in_channels, D, H, W)``."""
        self.check_input(x)
        features = self.init_dropout(self.init_conv(x))
        skips = []
        for stage in self.encoder_stages:
            features = stage(features)
            skips.append(features)
        token_map = self.token_projection(skips.pop())  # (B, E, D/8, H/8, W/8)
        batch, grid = token_map.shape[0], tuple(token_map.shape[2:])
        tokens = token_map.flatten(2).transpose(1, 2)  # (B, N, E), C order over (D/8, H/8, W/8)
        tokens = self.embedding_dropout(self.position_embedding(tokens, grid))
        for layer in self.transformer_layers:
            if self.gradient_checkpointing and torch.is_grad_enabled():
                tokens = checkpoint(layer, tokens, use_reentrant=False)
            else:
                tokens = layer(tokens)
        features = self.token_reduction(tokens.transpose(1, 2).reshape(batch, self.embedding_dim, *grid))
        for stage, skip in zip(self.decoder_stages, reversed(skips)):
            features = stage(features, skip)
        return self.output_conv(features)


def _check_arguments(
    *,
    in_channels: int,
    out_channels: int,
    img_size: tuple[int, int, int],
    base_channels: int,
    embedding_dim: int,
    num_layers: int,
    num_heads: int,
    mlp_dim: int,
    rates: dict[str, float],
) -> None:
    """Raise ``ValueError`` naming the first invalid ``TransBTS`` argument."""
    positive = {
        "in_channels": in_channels,
        "out_channels": out_channels,
        "base_channels": base_channels,
        "embedding_dim": embedding_dim,
        "num_layers": num_layers,
        "num_heads": num_heads,
        "mlp_dim": mlp_dim,
    }
    for name, value in positive.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    if any(s < TransBTS.DOWNSAMPLING or s % TransBTS.DOWNSAMPLING for s in img_size):
        raise ValueError(f"img_size must be positive multiples of {TransBTS.DOWNSAMPLING}, got {img_size}")
    if base_channels % ENCODER_NORM_GROUPS:
        raise ValueError(
            f"base_channels must be divisible by {ENCODER_NORM_GROUPS} (GroupNorm groups), got {base_channels}"
        )
    if embedding_dim % num_heads:
        raise ValueError(f"embedding_dim ({embedding_dim}) must be divisible by num_heads ({num_heads})")
    for name, rate in rates.items():
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"{name} must be in [0, 1), got {rate!r}")
