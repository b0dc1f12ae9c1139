"""Inference engines behind the Detector: the same network run by PyTorch, ONNX Runtime or
OpenVINO, chosen by measurement on this machine.

Why three: at the bundled model's width (8 to 64 channels) PyTorch's eager convolutions leave
most of a CPU idle between small kernels; ONNX Runtime and OpenVINO fuse convolution + bias +
ELU and pick their own kernels (bench/bench_detector_engines.py has the figures). Every engine
computes the same tiles with the same stitching (inference.tiling), so they agree to float
rounding; `choose_engine` checks that on a real batch before it uses one.

- The exported graph takes the RAW int16 stack with the black level and gain as inputs: the
  scaling, clipping and space-to-depth are its first nodes, so the runtime fuses them with the
  first convolution's layout change and the frame is never expanded to float in Python.
- The network is exported to ONNX once per model (keyed by its weights' SHA-256) into the
  engine cache (`DARKFIELD_CACHE_DIR`, default ~/.cache/darkfield-station). A sidecar records
  the weights hash and the ONNX file's own hash; a file that does not match either is rebuilt,
  never used.
- `choose_engine` times each installed engine on one batch of the tile shape and keeps the
  fastest whose output matches PyTorch's; the choice is cached per model, machine, thread count
  and tile shape, so only the first start of a station pays for the measurement.
- Threads are set per engine session (ONNX Runtime, OpenVINO), not process-wide, so the
  acquisition threads keep their core. Only the PyTorch fallback sets torch's global count.
- bf16 (OpenVINO) is a candidate only on CPUs with AVX-512 BF16 or AMX; it is used only when
  its output is within `BF16_MAX_DP` of fp32 on the check batch. Machines without those
  instructions fall back to fp32 by themselves.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import logging
import os
import platform
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from errors import ModelError
from inference.preprocess import SPACE_TO_DEPTH_Q, RawScaling
from inference.tiling import network_input

log = logging.getLogger(__name__)

ENGINES = ("torch", "onnxruntime", "openvino")
ONNX_OPSET = 17
ARTEFACT_FORMAT = 2  # bump when the export changes: old artefacts are rebuilt
EQUAL_MAX_ABS = 1e-3  # fp32 engines must agree with PyTorch to this (network output units)
BF16_MAX_DP = 0.02  # reduced precision: max |p_fp32 - p| allowed (issue's equivalence bound)
TIMED_RUNS = 2


def cache_dir() -> Path:
    return Path(os.environ.get("DARKFIELD_CACHE_DIR")
                or Path.home() / ".cache" / "darkfield-station")


def available_engines() -> list[str]:
    """The engines whose runtime is installed here (PyTorch always is)."""
    return ["torch", *(e for e in ENGINES[1:] if importlib.util.find_spec(e) is not None)]


def cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    line = next((ln for ln in text.splitlines() if ln.startswith("flags")), "")
    return set(line.split(":", 1)[-1].split())


def has_fast_bf16() -> bool:
    return bool({"avx512_bf16", "amx_bf16"} & cpu_flags())


def instruction_set() -> str:
    """The widest vector / matrix extensions of this CPU, for benchmark output."""
    flags = cpu_flags()
    found = [f for f in ("amx_bf16", "amx_int8", "avx512_bf16", "avx512_vnni", "avx512f",
                         "avx_vnni", "avx2") if f in flags]
    return ", ".join(found) or platform.machine()


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


# -- the exported artefact -----------------------------------------------------------------------
class _RawToFinest(torch.nn.Module):
    """RAW int16 (N, S, H, W) -> the network's finest output (the other heads are training
    aids), with the scaling of inference.preprocess.normalize_raw and F.pixel_unshuffle."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, raw: torch.Tensor, black: torch.Tensor, gain: torch.Tensor
                ) -> torch.Tensor:
        x = ((raw.to(torch.float32) - black) * gain).clamp(0.0, 1.0)
        return self.model(F.pixel_unshuffle(x, SPACE_TO_DEPTH_Q))[0]


def onnx_artefact(model: torch.nn.Module, weights_sha256: str,
                  directory: Path | None = None) -> Path:
    """The model as ONNX in the engine cache: reused when its sidecar matches the weights and
    the file's own hash, rebuilt otherwise (a corrupt, truncated or foreign file is never used).
    """
    if not weights_sha256:
        raise ModelError("exporting the detector needs the weights' SHA-256 (from its model "
                         "card); load it with Detector.from_file")
    directory = directory or cache_dir()
    path = directory / f"detector-{weights_sha256[:16]}-v{ARTEFACT_FORMAT}.onnx"
    sidecar = path.with_suffix(".json")
    if path.is_file() and sidecar.is_file():
        try:
            meta = json.loads(sidecar.read_text())
            if (meta.get("weights_sha256") == weights_sha256
                    and meta.get("format") == ARTEFACT_FORMAT
                    and meta.get("onnx_sha256") == _sha256(path)):
                return path
            log.warning("engine cache: %s does not match its model or its recorded hash; "
                        "rebuilding it", path)
        except (OSError, ValueError) as exc:
            log.warning("engine cache: unreadable %s (%s); rebuilding it", sidecar, exc)
    _export(model, path)
    meta = {"format": ARTEFACT_FORMAT, "weights_sha256": weights_sha256,
            "onnx_sha256": _sha256(path), "opset": ONNX_OPSET, "torch": torch.__version__}
    _write_atomically(sidecar, json.dumps(meta, indent=2).encode())
    return path


def _export(model: torch.nn.Module, path: Path) -> None:
    import io
    import warnings

    net = _RawToFinest(model).eval().to("cpu", memory_format=torch.contiguous_format)
    states = int(model.config.in_channels) // SPACE_TO_DEPTH_Q ** 2
    args = (torch.zeros(1, states, 256, 256, dtype=torch.int16), torch.ones(1), torch.ones(1))
    buf = io.BytesIO()
    try:
        with warnings.catch_warnings(), torch.inference_mode(False):
            warnings.simplefilter("ignore")  # the tracer warns about the shape check only
            torch.onnx.export(net, args, buf, input_names=["raw", "black", "gain"],
                              output_names=["y"], opset_version=ONNX_OPSET, dynamo=False,
                              dynamic_axes={"raw": {0: "n", 2: "h", 3: "w"},
                                            "y": {0: "n", 2: "h2", 3: "w2"}})
    except Exception as exc:
        raise ModelError(f"could not export the detector to ONNX ({exc}); use "
                         "[detector] engine = \"torch\"") from exc
    _write_atomically(path, buf.getvalue())


# -- engines -----------------------------------------------------------------------------------
class TorchEngine:
    """PyTorch eager, channels-last (the reference path): takes the network input."""

    name = "torch"
    precision = "fp32"
    channels_last = True
    fixed_batch = False
    takes_raw = False

    def __init__(self, model: torch.nn.Module, threads: int | None = None):
        self.model = model.to(memory_format=torch.channels_last).eval()
        if threads:
            torch.set_num_threads(threads)  # torch has no per-model thread pool

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return self.model(x)[0]


def _graph_inputs(raw: torch.Tensor, scaling: RawScaling) -> dict[str, np.ndarray]:
    return {"raw": np.ascontiguousarray(raw.numpy()),
            "black": np.array([scaling.black_level], np.float32),
            "gain": np.array([scaling.gain], np.float32)}


class OnnxRuntimeEngine:
    """ONNX Runtime on the CPU: takes RAW int16 tiles and the scaling."""

    name = "onnxruntime"
    precision = "fp32"
    channels_last = False
    fixed_batch = False
    takes_raw = True

    def __init__(self, onnx_path: Path, threads: int | None = None):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads or 0
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self.session = ort.InferenceSession(str(onnx_path), opts,
                                                providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise ModelError(f"ONNX Runtime cannot load {onnx_path} ({exc}); delete it to "
                             "rebuild it, or use [detector] engine = \"torch\"") from exc

    def __call__(self, raw: torch.Tensor, scaling: RawScaling) -> torch.Tensor:
        return torch.from_numpy(self.session.run(None, _graph_inputs(raw, scaling))[0])


class OpenVinoEngine:
    """OpenVINO on the CPU, compiled once per input shape (tiles have one shape per frame
    size, and `fixed_batch` pads the last batch to it); takes RAW int16 tiles and the scaling."""

    name = "openvino"
    channels_last = False
    fixed_batch = True
    takes_raw = True

    def __init__(self, onnx_path: Path, threads: int | None = None, precision: str = "fp32"):
        import openvino as ov

        self.precision = precision
        self._core = ov.Core()
        try:
            self._model = self._core.read_model(str(onnx_path))
        except Exception as exc:
            raise ModelError(f"OpenVINO cannot read {onnx_path} ({exc}); delete it to rebuild "
                             "it, or use [detector] engine = \"torch\"") from exc
        self._config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": {"fp32": "f32"}.get(
                                            precision, precision),
                                        "PERFORMANCE_HINT": "LATENCY"}
        if threads:
            self._config["INFERENCE_NUM_THREADS"] = int(threads)
        self._requests: dict[tuple[int, ...], Any] = {}

    def _request(self, shape: tuple[int, ...]) -> Any:
        req = self._requests.get(shape)
        if req is None:
            model = self._model.clone()
            model.reshape({"raw": list(shape), "black": [1], "gain": [1]})
            req = self._core.compile_model(model, "CPU", self._config).create_infer_request()
            self._requests[shape] = req
        return req

    def __call__(self, raw: torch.Tensor, scaling: RawScaling) -> torch.Tensor:
        inputs = _graph_inputs(raw, scaling)
        req = self._request(tuple(inputs["raw"].shape))
        req.infer(inputs)
        return torch.from_numpy(req.get_output_tensor(0).data.copy())


Engine = TorchEngine | OnnxRuntimeEngine | OpenVinoEngine


def build_engine(name: str, model: torch.nn.Module, weights_sha256: str,
                 threads: int | None = None, precision: str = "fp32") -> Engine:
    """One engine by name ("torch", "onnxruntime", "openvino")."""
    if name == "torch":
        return TorchEngine(model, threads)
    if name not in ENGINES:
        raise ModelError(f"unknown inference engine {name!r}; choose one of {', '.join(ENGINES)}"
                         " or auto")
    if name not in available_engines():
        raise ModelError(f"inference engine {name} is not installed (pip install {name}), or "
                         "use [detector] engine = \"auto\"")
    path = onnx_artefact(model, weights_sha256)
    if name == "onnxruntime":
        return OnnxRuntimeEngine(path, threads)
    return OpenVinoEngine(path, threads, precision)


# -- choosing by measurement ---------------------------------------------------------------------
@dataclass(frozen=True)
class EngineChoice:
    name: str
    precision: str
    seconds_per_batch: dict[str, float]  # "engine/precision" -> measured seconds
    measured: bool  # False: read from the cache of an earlier measurement

    @property
    def label(self) -> str:
        return f"{self.name} {self.precision}"


def _candidates() -> list[tuple[str, str]]:
    out = [(e, "fp32") for e in available_engines()]
    if "openvino" in available_engines() and has_fast_bf16():
        out.append(("openvino", "bf16"))
    return out


def _timed(engine: Callable[..., torch.Tensor], *args: Any) -> tuple[float, torch.Tensor]:
    y = engine(*args)  # warm-up: compilation, kernel selection
    best = float("inf")
    for _ in range(TIMED_RUNS):
        t0 = time.perf_counter()
        y = engine(*args)
        best = min(best, time.perf_counter() - t0)
    return best, y


def check_batch(shape: Sequence[int], seed: int = 0) -> torch.Tensor:
    """RAW int16 (N, S, H, W) for choosing an engine: dark-field-like DN (mostly near the
    black level, some bright structure up to saturation), reproducible."""
    rng = np.random.default_rng(seed)
    dark = rng.normal(RawScaling().black_level + 4.0, 4.0, size=tuple(shape))
    bright = rng.random(tuple(shape)) < 0.01
    raw = np.where(bright, rng.uniform(100, 4095, size=tuple(shape)), dark)
    return torch.from_numpy(np.clip(np.rint(raw), 0, 4095).astype(np.int16))


def choose_engine(model: torch.nn.Module, weights_sha256: str, raw_shape: Sequence[int],
                  threads: int | None = None, sample: torch.Tensor | None = None
                  ) -> tuple[Engine, EngineChoice]:
    """The fastest engine here whose output matches PyTorch's on a RAW batch of `raw_shape`
    (N, states, H, W), scaled with the default RawScaling.

    `sample`: a real RAW int16 batch of that shape for the check (default: `check_batch`).
    """
    shape = tuple(int(v) for v in raw_shape)
    key = json.dumps({"weights": weights_sha256, "shape": shape, "threads": threads,
                      "cpu": platform.processor() or platform.machine(), "flags": instruction_set(),
                      "engines": _candidates(), "torch": torch.__version__,
                      "format": ARTEFACT_FORMAT}, sort_keys=True)
    record = cache_dir() / f"engine-choice-{hashlib.sha256(key.encode()).hexdigest()[:16]}.json"
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        saved = json.loads(record.read_text())
        engine = build_engine(saved["name"], model, weights_sha256, threads, saved["precision"])
        return engine, EngineChoice(saved["name"], saved["precision"],
                                    dict(saved["seconds_per_batch"]), measured=False)
    raw = sample if sample is not None else check_batch(shape)
    scaling = RawScaling()
    x = torch.stack([network_input(r.numpy(), scaling) for r in raw])
    reference = TorchEngine(model, threads)
    t_ref, y_ref = _timed(reference, x.contiguous(memory_format=torch.channels_last))
    timings = {"torch/fp32": t_ref}
    best: tuple[float, Engine] = (t_ref, reference)
    for name, precision in _candidates():
        if name == "torch":
            continue
        try:
            engine = build_engine(name, model, weights_sha256, threads, precision)
            t, y = _timed(engine, raw, scaling)
        except Exception as exc:  # a runtime that fails here is simply not chosen
            log.warning("engine %s %s unusable here: %s", name, precision, exc)
            continue
        diff = float((y.float() - y_ref.float()).abs().max())
        bound = EQUAL_MAX_ABS if precision == "fp32" else BF16_MAX_DP
        if diff > bound:
            log.warning("engine %s %s differs from PyTorch by %.3g (> %g): not used",
                        name, precision, diff, bound)
            continue
        timings[f"{name}/{precision}"] = t
        if t < best[0]:
            best = (t, engine)
    engine = best[1]
    choice = EngineChoice(engine.name, engine.precision, timings, measured=True)
    with contextlib.suppress(OSError):
        _write_atomically(record, json.dumps({"name": choice.name, "precision": choice.precision,
                                              "seconds_per_batch": timings}).encode())
    log.info("inference engine: %s (s per batch of %s: %s)", choice.label, shape,
             ", ".join(f"{k} {v:.3f}" for k, v in timings.items()))
    return engine, choice
