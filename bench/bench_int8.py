"""Is int8 safe for the bundled detector? Post-training static quantization, measured.

ONNX Runtime's static quantization (QDQ, per-channel int8 weights, uint8 activations) of the
exported network, calibrated on nine 1024 px tiles of a full simulated RoI, then run by
OpenVINO (which executes QDQ models in int8) on the whole padded frame, one thread, against the
fp32 export. Prints seconds per forward and max |p_int8 - p_fp32| on truth scratch pixels; the
detector only uses a precision within 0.02 (README, "Inference engines").

    .venv/bin/python bench/bench_int8.py [--threads 1]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import openvino as ov
import torch
import torch.nn.functional as F
from bench_default_model import full_roi
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process

from inference import engines as E
from inference.detector import DEFAULT_MODEL, Detector
from inference.preprocess import RawScaling
from inference.tiling import network_input

MAX_DP = 0.02


class Tiles(CalibrationDataReader):
    def __init__(self, x: torch.Tensor):
        half = 512  # 1024 RAW px after space-to-depth
        self._it = iter([{"x": x[:, :, r:r + half, c:c + half].numpy().copy()}
                         for r in (0, 512, 1024) for c in (0, 512, 1024)])

    def get_next(self):
        return next(self._it, None)


def timed_forward(core: ov.Core, path: Path, x: np.ndarray, threads: int) -> tuple[float, np.ndarray]:
    model = core.read_model(str(path))
    model.reshape({"x": list(x.shape)})
    req = core.compile_model(model, "CPU", {"INFERENCE_NUM_THREADS": threads,
                                            "PERFORMANCE_HINT": "LATENCY",
                                            "INFERENCE_PRECISION_HINT": "f32"}
                             ).create_infer_request()
    req.infer({0: x})
    best = float("inf")
    for _ in range(2):
        t0 = time.perf_counter()
        req.infer({0: x})
        best = min(best, time.perf_counter() - t0)
    return best, req.get_output_tensor(0).data.copy()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    stack, mask, _ = full_roi()
    det = Detector.from_file(DEFAULT_MODEL, engine="torch")
    fp32 = E.onnx_artefact(det.model, det.card.weights_sha256)
    h, w = stack.shape[1:]
    ph, pw = -(-h // 64) * 64, -(-w // 64) * 64
    x = network_input(np.pad(stack, ((0, 0), (0, ph - h), (0, pw - w)), mode="reflect"),
                      RawScaling())[None].contiguous()
    with tempfile.TemporaryDirectory() as tmp:
        pre, int8 = Path(tmp) / "pre.onnx", Path(tmp) / "int8.onnx"
        quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
        quantize_static(str(pre), str(int8), Tiles(x), quant_format=QuantFormat.QDQ,
                        per_channel=True, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8)
        core = ov.Core()
        t32, y32 = timed_forward(core, fp32, x.numpy(), args.threads)
        t8, y8 = timed_forward(core, int8, x.numpy(), args.threads)
    to_p = (lambda a: (a + 1) / 2) if det.model.config.output_activation == "tanh" else (lambda a: a)
    scratch = F.max_pool2d(torch.from_numpy(np.pad(mask, ((0, ph - h), (0, pw - w)))[None]
                                            .astype(np.float32)), 2)[0].numpy() > 0
    dp = float(np.abs(to_p(y8[0, 0]) - to_p(y32[0, 0]))[scratch].max())
    print(f"CPU: {E.instruction_set()}; whole frame {pw} x {ph}, {args.threads} thread(s)")
    print(f"  OpenVINO fp32 {t32:.2f} s, int8 (QDQ) {t8:.2f} s ({t32 / t8:.2f}x faster); "
          f"max |dp| on scratch pixels {dp:.3f} -> {'safe' if dp <= MAX_DP else 'NOT safe'} "
          f"(bound {MAX_DP})")


if __name__ == "__main__":
    main()
