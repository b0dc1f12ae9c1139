"""Space-to-depth nested-weight U-Net (seed paper 004, sections 5.1-5.3).

Encoder: 6 levels of 2, 2, 3, 3, 4, 5 3x3 convolutions with 96, 128, 196, 256, 512, 768
features, ELU, 2x2 max-pool between levels, and a ResNet shortcut per level with its own 1x1
convolution. Decoder: asymmetric, 192, 96, 48, 24, 8 features, 2 convolutions per level, skip
connections from the encoder. Heads: 1x1 convolution + tanh at the 3 finest decoder scales.

Nested weights (paper 5.2): every encoder 3x3 convolution except the first two takes its kernel
as the slice `pool[:c_out, :c_in]` of one shared pool tensor (768 x 768 x 3 x 3 at full width).
`materialize()` copies the slices into plain `nn.Conv2d` layers for inference; the materialised
state dict has exactly the layout of a `nested=False` model (the paper's model 1).

Parameter counts: see `parameter_report()` / `python main.py model-info`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

# Paper numbers (section 5.1 / 5.2), used as the defaults of UNetConfig.
PAPER_IN_CHANNELS = 24  # 6 states x q^2 (q = 2)
PAPER_ENCODER_FEATURES = (96, 128, 196, 256, 512, 768)
PAPER_ENCODER_CONVS = (2, 2, 3, 3, 4, 5)
PAPER_DECODER_FEATURES = (192, 96, 48, 24, 8)
PAPER_DECODER_CONVS = 2
PAPER_OUTPUT_SCALES = 3
PAPER_OWN_WEIGHT_CONVS = 2  # "each convolution of the encoder (except for the first two)"
PAPER_PARAMS_NESTED = 13.9e6
PAPER_PARAMS_UNNESTED = 44.4e6


@dataclass(frozen=True)
class UNetConfig:
    """Architecture of a NestedUNet; stored verbatim in the model card."""

    in_channels: int = PAPER_IN_CHANNELS
    encoder_features: tuple[int, ...] = PAPER_ENCODER_FEATURES
    encoder_convs: tuple[int, ...] = PAPER_ENCODER_CONVS
    decoder_features: tuple[int, ...] = PAPER_DECODER_FEATURES
    decoder_convs: int = PAPER_DECODER_CONVS
    output_scales: int = PAPER_OUTPUT_SCALES
    nested: bool = True
    own_weight_convs: int = PAPER_OWN_WEIGHT_CONVS
    width: float = 1.0
    """Multiplies every feature count (encoder and decoder): the small CPU variants."""
    min_features: int = 4
    kernel_size: int = 3
    output_activation: str = "tanh"
    """"tanh" (auto-encoder L2 loss, paper model 4) or "sigmoid" (BCE, paper model 3)."""

    def __post_init__(self) -> None:
        if len(self.encoder_features) != len(self.encoder_convs):
            raise ValueError("encoder_features and encoder_convs must have the same length")
        if len(self.decoder_features) != len(self.encoder_features) - 1:
            raise ValueError("need one decoder level per encoder level but the deepest")
        if not 1 <= self.output_scales <= len(self.decoder_features):
            raise ValueError("output_scales must be 1..number of decoder levels")
        if self.output_activation not in ("tanh", "sigmoid"):
            raise ValueError(f"output_activation must be tanh or sigmoid, not "
                             f"{self.output_activation!r}")
        if self.width <= 0:
            raise ValueError("width must be > 0")

    def scaled(self, n: int) -> int:
        return max(self.min_features, int(round(n * self.width)))

    @property
    def enc(self) -> tuple[int, ...]:
        return tuple(self.scaled(n) for n in self.encoder_features)

    @property
    def dec(self) -> tuple[int, ...]:
        return tuple(self.scaled(n) for n in self.decoder_features)

    @property
    def divisor(self) -> int:
        """Input H and W (after space-to-depth) must be multiples of this (one per max-pool)."""
        return 2 ** (len(self.encoder_features) - 1)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> UNetConfig:
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown architecture keys {sorted(unknown)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


class PoolConv2d(nn.Module):
    """A 3x3 convolution whose kernel is `pool[:c_out, :c_in]` of a pool it does not own.

    The pool is passed to `forward` (not registered here) so the state dict holds it once.
    """

    def __init__(self, c_in: int, c_out: int, kernel_size: int = 3):
        super().__init__()
        self.in_channels, self.out_channels, self.kernel_size = c_in, c_out, kernel_size
        self.bias = nn.Parameter(torch.zeros(c_out))

    def forward(self, x: torch.Tensor, pool: torch.Tensor) -> torch.Tensor:
        w = pool[: self.out_channels, : self.in_channels]
        return F.conv2d(x, w, self.bias, padding=self.kernel_size // 2)

    def materialize(self, pool: torch.Tensor) -> nn.Conv2d:
        conv = nn.Conv2d(self.in_channels, self.out_channels, self.kernel_size,
                         padding=self.kernel_size // 2, device=pool.device, dtype=pool.dtype)
        with torch.no_grad():
            conv.weight.copy_(pool[: self.out_channels, : self.in_channels])
            conv.bias.copy_(self.bias)
        return conv

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, nested"


class EncoderLevel(nn.Module):
    """n 3x3 convolutions with ELU and a 1x1 ResNet shortcut: ELU(convs(x) + W_1x1 x)."""

    def __init__(self, c_in: int, c_out: int, n_convs: int, nested_from: int, k: int):
        super().__init__()
        convs: list[nn.Module] = []
        for i in range(n_convs):
            ci = c_in if i == 0 else c_out
            convs.append(PoolConv2d(ci, c_out, k) if i >= nested_from
                         else nn.Conv2d(ci, c_out, k, padding=k // 2))
        self.convs = nn.ModuleList(convs)
        self.shortcut = nn.Conv2d(c_in, c_out, 1)

    def forward(self, x: torch.Tensor, pool: torch.Tensor | None) -> torch.Tensor:
        h = x
        last = len(self.convs) - 1
        for i, conv in enumerate(self.convs):
            h = conv(h, pool) if isinstance(conv, PoolConv2d) else conv(h)
            if i < last:
                h = F.elu(h)
        return F.elu(h + self.shortcut(x))


class Encoder(nn.Module):
    """6 levels, max-pool 2x2 between them; owns the nested weight pool."""

    def __init__(self, cfg: UNetConfig):
        super().__init__()
        enc = cfg.enc
        levels, seen, c_in = [], 0, cfg.in_channels
        pool_in = pool_out = 0
        for c_out, n in zip(enc, cfg.encoder_convs, strict=True):
            nested_from = max(0, cfg.own_weight_convs - seen) if cfg.nested else n
            levels.append(EncoderLevel(c_in, c_out, n, nested_from, cfg.kernel_size))
            for i in range(nested_from, n):
                pool_in = max(pool_in, c_in if i == 0 else c_out)
                pool_out = max(pool_out, c_out)
            seen += n
            c_in = c_out
        self.levels = nn.ModuleList(levels)
        k = cfg.kernel_size
        self.pool = (nn.Parameter(torch.empty(pool_out, pool_in, k, k))
                     if pool_in and pool_out else None)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for i, level in enumerate(self.levels):
            if i:
                x = F.max_pool2d(x, 2)
            x = level(x, self.pool)
            feats.append(x)
        return feats

    @property
    def is_nested(self) -> bool:
        return self.pool is not None

    def materialize(self) -> None:
        """Replace every PoolConv2d by an nn.Conv2d holding a copy of its slice; drop the pool."""
        if self.pool is None:
            return
        for level in self.levels:
            for i, conv in enumerate(level.convs):
                if isinstance(conv, PoolConv2d):
                    level.convs[i] = conv.materialize(self.pool.detach())
        self.pool = None


class DecoderLevel(nn.Module):
    """Nearest 2x upsampling, concatenation with the encoder skip, n conv + ELU."""

    def __init__(self, c_up: int, c_skip: int, c_out: int, n_convs: int, k: int):
        super().__init__()
        self.convs = nn.ModuleList(
            nn.Conv2d(c_up + c_skip if i == 0 else c_out, c_out, k, padding=k // 2)
            for i in range(n_convs))

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = torch.cat([F.interpolate(x, size=skip.shape[-2:], mode="nearest"), skip], dim=1)
        for conv in self.convs:
            x = F.elu(conv(x))
        return x


class Decoder(nn.Module):
    """Asymmetric decoder; returns the features of every level, coarsest first."""

    def __init__(self, cfg: UNetConfig):
        super().__init__()
        enc, dec = cfg.enc, cfg.dec
        levels, c_up = [], enc[-1]
        for j, c_out in enumerate(dec):
            c_skip = enc[-2 - j]
            levels.append(DecoderLevel(c_up, c_skip, c_out, cfg.decoder_convs, cfg.kernel_size))
            c_up = c_out
        self.levels = nn.ModuleList(levels)

    def forward(self, feats: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        x, outs = feats[-1], []
        for j, level in enumerate(self.levels):
            x = level(x, feats[-2 - j])
            outs.append(x)
        return outs


class Heads(nn.Module):
    """1x1 convolution to one channel + tanh (or sigmoid) at the finest `output_scales` levels."""

    def __init__(self, cfg: UNetConfig):
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(c, 1, 1) for c in reversed(cfg.dec[-cfg.output_scales:]))
        self.activation = cfg.output_activation

    def forward(self, dec_feats: Sequence[torch.Tensor], logits: bool = False
                ) -> list[torch.Tensor]:
        """Outputs finest first: full (input) resolution, 1/2, 1/4."""
        outs = []
        for i, conv in enumerate(self.convs):
            z = conv(dec_feats[-1 - i])
            if not logits:
                z = torch.tanh(z) if self.activation == "tanh" else torch.sigmoid(z)
            outs.append(z)
        return outs


class NestedUNet(nn.Module):
    """The detector network: (N, 24, H, W) -> list of (N, 1, H/2^s, W/2^s), s = 0, 1, 2."""

    def __init__(self, cfg: UNetConfig | None = None, **overrides: Any):
        super().__init__()
        cfg = replace(cfg or UNetConfig(), **overrides) if overrides else (cfg or UNetConfig())
        self.config = cfg
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)
        self.heads = Heads(cfg)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Xavier-uniform (Glorot) weights, zero biases (paper 5.6).

        MXNet's Xavier(rnd_type="uniform", factor_type="avg", magnitude=3) used by the paper is
        U(-sqrt(6 / (fan_in + fan_out)), +...), which is `xavier_uniform_` with gain 1. The pool
        is one parameter and is initialised with its own (largest) fans, as MXNet would.
        """
        for p in self.parameters():
            if p.ndim >= 2:
                nn.init.xavier_uniform_(p)
            else:
                nn.init.zeros_(p)

    def forward(self, x: torch.Tensor, logits: bool = False) -> list[torch.Tensor]:
        d = self.config.divisor
        if x.shape[-1] % d or x.shape[-2] % d:
            raise ValueError(f"input {tuple(x.shape[-2:])} must be a multiple of {d} "
                             f"(2 x {d} RAW pixels); pad it (inference.tiling does)")
        return self.heads(self.decoder(self.encoder(x)), logits=logits)

    def materialize(self) -> NestedUNet:
        """Turn nested slices into plain convolutions in place (for inference); returns self.

        Afterwards `config.nested` is False and the state dict loads into `nested=False`.
        """
        self.encoder.materialize()
        self.config = replace(self.config, nested=False)
        return self

    @property
    def is_nested(self) -> bool:
        return self.encoder.is_nested


# --------------------------------------------------------------------------------------------
# Parameter counts
# --------------------------------------------------------------------------------------------

@dataclass
class ParameterCount:
    """Trainable parameters of one configuration, by part."""

    config: UNetConfig
    parts: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.parts.values())


def count_parameters(cfg: UNetConfig) -> ParameterCount:
    """Count without allocating (meta device), so the 40 M full model costs nothing."""
    with torch.device("meta"):
        model = NestedUNet(cfg)
    parts: dict[str, int] = {"encoder pool (shared)": 0, "encoder own 3x3": 0,
                             "encoder 1x1 shortcuts": 0, "encoder biases": 0,
                             "decoder": 0, "heads": 0}
    for name, p in model.named_parameters():
        n = p.numel()
        if name == "encoder.pool":
            parts["encoder pool (shared)"] += n
        elif name.startswith("encoder") and ".shortcut." in name:
            parts["encoder 1x1 shortcuts"] += n
        elif name.startswith("encoder") and p.ndim == 1:
            parts["encoder biases"] += n
        elif name.startswith("encoder"):
            parts["encoder own 3x3"] += n
        elif name.startswith("decoder"):
            parts["decoder"] += n
        else:
            parts["heads"] += n
    return ParameterCount(cfg, parts)


def _m(n: float) -> str:
    return f"{n / 1e6:7.2f} M"


def parameter_report(widths: Sequence[float] = (1.0, 0.5, 0.25, 0.125)) -> str:
    """Parameter counts of nested / unnested models beside the paper's 13.9 M / 44.4 M."""
    nested = count_parameters(UNetConfig(nested=True))
    flat = count_parameters(UNetConfig(nested=False))
    lines = ["NestedUNet parameter counts (full width, paper architecture)", ""]
    lines.append(f"{'part':26s} {'nested':>10s} {'unnested':>10s}")
    for part in nested.parts:
        lines.append(f"{part:26s} {_m(nested.parts[part]):>10s} {_m(flat.parts[part]):>10s}")
    lines.append(f"{'total':26s} {_m(nested.total):>10s} {_m(flat.total):>10s}")
    lines.append(f"{'paper (section 5.2)':26s} {_m(PAPER_PARAMS_NESTED):>10s} "
                 f"{_m(PAPER_PARAMS_UNNESTED):>10s}")
    saving, paper_saving = flat.total - nested.total, PAPER_PARAMS_UNNESTED - PAPER_PARAMS_NESTED
    gap_n, gap_f = PAPER_PARAMS_NESTED - nested.total, PAPER_PARAMS_UNNESTED - flat.total
    lines += [
        "",
        f"Saved by nesting: {_m(saving).strip()} here, {_m(paper_saving).strip()} in the paper "
        "(44.4 - 13.9):",
        "  the nesting scheme (one 768x768x3x3 pool, every encoder conv but the first two",
        "  sliced from it) reproduces the paper's saving to within rounding.",
        f"Gap to the paper: {_m(gap_n).strip()} (nested) and {_m(gap_f).strip()} (unnested),",
        "  the same in both, so it lies in the parts nesting does not touch (decoder, shortcuts,",
        "  heads, upsampling). The paper gives only feature counts for those; its Fig. 9",
        "  building blocks are not in the text. Here the upsampling is parameter-free (nearest)",
        "  and each decoder level has exactly 2 3x3 convs; learned upsampling (e.g. 3x3",
        "  transposed convs) or wider decoder inputs would account for the ~4.6 M.",
    ]
    if widths:
        lines += ["", "Width variants (nested / unnested, materialised = unnested layout):"]
        for w in widths:
            n = count_parameters(UNetConfig(nested=True, width=w)).total
            f = count_parameters(UNetConfig(nested=False, width=w)).total
            enc = UNetConfig(width=w).enc
            lines.append(f"  width {w:<6g} encoder {enc}: {_m(n)} / {_m(f)}")
    return "\n".join(lines)


def conv_flops(cfg: UNetConfig, h: int, w: int) -> float:
    """Multiply-add FLOPs (2 per MAC) of one forward pass on an (24, h, w) input."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        model = NestedUNet(cfg)
        x = torch.empty(1, cfg.in_channels, h, w)
    with FlopCounterMode(display=False) as counter:
        model(x)
    return float(counter.get_total_flops())


def receptive_field_px(cfg: UNetConfig) -> int:
    """Encoder receptive field in network-input pixels (used to justify tile margins)."""
    rf, jump = 1, 1
    for i, n in enumerate(cfg.encoder_convs):
        if i:
            rf += jump  # 2x2 max-pool
            jump *= 2
        rf += n * (cfg.kernel_size - 1) * jump
    return rf


__all__ = [
    "Decoder", "Encoder", "Heads", "NestedUNet", "ParameterCount", "PoolConv2d", "UNetConfig",
    "conv_flops", "count_parameters", "parameter_report", "receptive_field_px",
    "PAPER_PARAMS_NESTED", "PAPER_PARAMS_UNNESTED",
]
