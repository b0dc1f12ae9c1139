"""Schemas of the model cards (detector and crop classifier), checked before anything is built.

A card is read from a file anyone could have edited: every number here sizes a network or
moves a threshold, so a NaN `scaling` turns a FAIL into a PASS and `input_size = 1e6` allocates
terabytes. Each field is typed and bounded, unknown keys are refused (a typo would silently
fall back to a default), and the problems are listed by key so the card can be fixed by hand.
The bounds are generous: ten times the paper's sizes, never a size no machine could hold.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from errors import ModelError, describe_validation_error


class ModelLoadError(ModelError):
    """A model file pair that cannot be used; the message names the file and what to do."""


MAX_CARD_BYTES = 10 << 20
"""A model card is a few kB; anything above this is not one (and is not read into memory)."""


def read_card_text(path: Path) -> str:
    """The card's JSON text, refused clearly when it is huge or not UTF-8 text."""
    size = path.stat().st_size
    if size > MAX_CARD_BYTES:
        raise ModelLoadError(f"{path}: {size} bytes is far too large for a model card "
                             f"(at most {MAX_CARD_BYTES}); restore the exported .json")
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ModelLoadError(f"{path}: the model card is not UTF-8 text ({exc.reason} at byte "
                             f"{exc.start}); restore the exported .json") from None


MAX_FEATURES = 8192
"""Largest feature count of any layer after width scaling (the paper's widest is 768)."""
MAX_LEVELS = 10
MAX_TILE_PX = 16384
MAX_CLASSIFIER_INPUT_PX = 1024
MAX_CLASSES = 1000
MAX_IN_CHANNELS = 64

Features = Annotated[int, Field(ge=1, le=MAX_FEATURES)]
Convs = Annotated[int, Field(ge=1, le=16)]
Unit = Annotated[float, Field(ge=0.0, le=1.0)]
DN = Annotated[float, Field(ge=0.0, le=65535.0)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, strict=False)


class Architecture(_Strict):
    in_channels: int = Field(ge=1, le=MAX_IN_CHANNELS)
    encoder_features: list[Features] = Field(min_length=1, max_length=MAX_LEVELS)
    encoder_convs: list[Convs] = Field(min_length=1, max_length=MAX_LEVELS)
    decoder_features: list[Features] = Field(max_length=MAX_LEVELS)
    decoder_convs: Convs
    output_scales: int = Field(ge=1, le=MAX_LEVELS)
    nested: bool
    own_weight_convs: int = Field(ge=0, le=16)
    width: float = Field(gt=0.0, le=8.0)
    min_features: Features = 4
    kernel_size: Literal[1, 3, 5, 7] = 3
    output_activation: Literal["tanh", "sigmoid"]

    @model_validator(mode="after")
    def _scaled_sizes_bounded(self) -> Architecture:
        widest = max([*self.encoder_features, *self.decoder_features]) * self.width
        if widest > MAX_FEATURES:
            raise ValueError(f"width {self.width} makes a layer of {widest:.0f} features "
                             f"(at most {MAX_FEATURES})")
        return self


class Postprocess(_Strict):
    t_low: Unit
    t_high: Unit
    cluster_downsample: int = Field(ge=1, le=256)
    eps: float = Field(gt=0.0, le=10000.0)
    min_samples: int = Field(ge=1, le=10**6)
    min_high_px: int = Field(1, ge=1, le=10**6)
    weighted: bool = True
    method: Literal["fast", "dbscan"] = "fast"
    map_scale: int = Field(2, ge=1, le=16)
    contaminant_threshold: Unit = 0.3
    contaminant_grow_threshold: Unit = 0.1
    contaminant_min_area: int = Field(2, ge=0, le=10**8)
    measure_bin_px: float = Field(4.0, gt=0.0, le=10000.0)
    measure_min_part_px: int = Field(4, ge=0, le=10**8)


class Tiling(_Strict):
    tile: int = Field(ge=64, le=MAX_TILE_PX)
    overlap: int = Field(ge=0, le=MAX_TILE_PX)
    batch_size: int = Field(ge=1, le=1024)
    stitch: Literal["crop", "blend"] = "crop"


class Scaling(_Strict):
    black_level: DN
    white_level: DN

    @model_validator(mode="after")
    def _ordered(self) -> Scaling:
        if self.white_level <= self.black_level:
            raise ValueError(f"white_level {self.white_level} must exceed black_level "
                             f"{self.black_level}")
        return self


class DetectorCard(_Strict):
    format: Literal["darkfield-detector-card"]
    card_version: int = Field(1, ge=1)
    name: str = Field(max_length=200)
    architecture: Architecture
    postprocess: Postprocess | None = None
    tiling: Tiling | None = None
    scaling: Scaling | None = None
    training_data: dict[str, Any] = {}
    metrics: dict[str, Any] = {}
    weights_sha256: str = Field("", pattern=r"^([0-9a-f]{64})?$")
    weights_file: str = Field("", max_length=500)
    created: str = Field("", max_length=100)
    notes: str = Field("", max_length=100_000)


class Normalisation(_Strict):
    mean: list[float] = Field(min_length=1, max_length=MAX_IN_CHANNELS)
    std: list[Annotated[float, Field(gt=0.0)]] = Field(min_length=1, max_length=MAX_IN_CHANNELS)


class ClassifierConfig(BaseModel):
    """The settings that size something; each method's other keys must be finite numbers,
    flags or short strings (the loader then refuses keys its method's dataclass lacks)."""

    model_config = ConfigDict(extra="allow", allow_inf_nan=False)

    input_size: int = Field(ge=8, le=MAX_CLASSIFIER_INPUT_PX)
    backbone: str = Field(max_length=100)
    epochs: int = Field(1, ge=0, le=10**5)
    lr: float = Field(1e-3, ge=0.0)
    weight_decay: float = Field(0.0, ge=0.0)
    seed: int = 0
    augment: bool = True
    batch_size: int = Field(32, ge=1, le=65536)
    predict_batch_size: int = Field(256, ge=1, le=65536)
    embed_dim: int = Field(128, ge=1, le=MAX_FEATURES)
    d: int | None = Field(None, ge=1, le=MAX_FEATURES)
    width: float = Field(1.0, gt=0.0, le=8.0)
    big_kernel: int = Field(7, ge=1, le=63)
    db_shots: int | None = Field(None, ge=1, le=10**6)

    @model_validator(mode="after")
    def _plain_values(self) -> ClassifierConfig:
        for key, value in (self.model_extra or {}).items():
            ok = value is None or isinstance(value, (bool, int, str)) and len(str(value)) < 100 \
                or isinstance(value, float) and math.isfinite(value)
            if not ok:
                raise ValueError(f"config.{key} = {value!r:.40}: not a finite number, flag or "
                                 "short text")
        return self


class ClassifierExtra(BaseModel):
    model_config = ConfigDict(extra="allow", allow_inf_nan=False)

    n_train_classes: int | None = Field(None, ge=1, le=MAX_CLASSES)
    database_size: int | None = Field(None, ge=0, le=10**7)


class ClassifierCard(_Strict):
    format: Literal["darkfield-crop-classifier"]
    version: int = Field(1, ge=1)
    method: str = Field(max_length=50)
    title: str = Field("", max_length=500)
    classes: list[Annotated[str, Field(min_length=1, max_length=100)]] = Field(
        min_length=1, max_length=MAX_CLASSES)
    in_channels: int = Field(ge=1, le=MAX_IN_CHANNELS)
    config: ClassifierConfig
    normalisation: Normalisation
    extra: ClassifierExtra = ClassifierExtra()
    training: dict[str, Any] = {}

    @model_validator(mode="after")
    def _channels_agree(self) -> ClassifierCard:
        n = self.in_channels
        if len(self.normalisation.mean) != n or len(self.normalisation.std) != n:
            raise ValueError(f"normalisation needs {n} mean and std values (in_channels)")
        if len(set(self.classes)) != len(self.classes):
            raise ValueError("classes are not unique")
        return self


def card_problems(schema: type[BaseModel], data: Any) -> list[str]:
    """Every problem of `data` against `schema`, one line each (empty when it is valid)."""
    try:
        schema.model_validate(data)
    except ValidationError as exc:
        return [describe_validation_error(dict(e), root="(card)", max_value_chars=80)
                for e in exc.errors()]
    return []


def check_card(schema: type[BaseModel], data: Any, source: Path) -> None:
    """Raise ModelLoadError listing every problem of the card read from `source`."""
    problems = card_problems(schema, data)
    if problems:
        raise ModelLoadError(f"{source}: the model card is not valid:\n  " + "\n  ".join(problems)
                             + "\nfix those keys, or use the card exported with these weights")


def parse_card(text: str, source: Path, schema: type[BaseModel], *, what: str, fmt: str,
               version_key: str, newest: int) -> dict[str, Any]:
    """A card's JSON as a dict that `schema` accepts: its format, its version (newer than this
    software reads means upgrade) and every key checked; ModelLoadError says what is wrong."""
    try:
        card = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ModelLoadError(f"{source}: model card is not valid JSON ({exc}); restore it "
                             "from the export that produced the weights") from None
    if not isinstance(card, dict) or card.get("format") != fmt:
        raise ModelLoadError(f"{source}: not a {what} (format="
                             f"{card.get('format') if isinstance(card, dict) else None!r}, "
                             f"expected {fmt!r})")
    version = card.get(version_key, newest)
    if isinstance(version, int) and version > newest:
        raise ModelLoadError(f"{source}: {version_key} {version} is newer than this software "
                             f"reads ({newest}); upgrade the software")
    check_card(schema, card, source)
    return card
