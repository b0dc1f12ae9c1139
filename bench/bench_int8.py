"""Is int8 safe for the bundled detector? Post-training static quantization, measured.

ONNX Runtime's static quantization (QDQ, per-channel int8 weights, uint8 activations) of the
exported RAW-input graph, calibrated on nine 1024 px tiles of a full simulated RoI, then run by
OpenVINO (which executes QDQ models in int8) on the whole padded frame, against the fp32
export. Convolutions whose names contain a `--keep-fp32` pattern stay fp32 (by default the two
that read the scaled RAW input: a faint scratch is 12-30 DN, below one uint8 step of the input
range). Prints seconds per forward and max |p_int8 - p_fp32| on truth scratch pixels; the
detector only uses a precision within 0.02 (README, "Inference engines").

    .venv/bin/python bench/bench_int8.py [--threads 1] [--keep-fp32 PATTERN ...]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import openvino as ov
import torch
import torch.nn.functional as F
from bench_default_model import full_roi
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process

from inference import engines as E
from inference.detector import DEFAULT_MODEL, Detector
from inference.preprocess import RawScaling
from inference.tiling import raw_int16

MAX_DP = 0.02
INPUT_CONVS = ("levels.0/convs.0/", "levels.0/shortcut/")


def graph_inputs(raw: np.ndarray) -> dict[str, np.ndarray]:
    s = RawScaling()
    return {"raw": raw, "black": np.array([s.black_level], np.float32),
            "gain": np.array([s.gain], np.float32)}


class Tiles(CalibrationDataReader):
    def __init__(self, raw: np.ndarray):
        self._it = iter([graph_inputs(np.ascontiguousarray(raw[:, :, r:r + 1024, c:c + 1024]))
                         for r in (0, 1024, 2048) for c in (0, 1024, 2048)])

    def get_next(self):
        return next(self._it, None)


def timed_forward(core: ov.Core, path: Path, raw: np.ndarray, threads: int
                  ) -> tuple[float, np.ndarray]:
    model = core.read_model(str(path))
    model.reshape({"raw": list(raw.shape), "black": [1], "gain": [1]})
    req = core.compile_model(model, "CPU", {"INFERENCE_NUM_THREADS": threads,
                                            "PERFORMANCE_HINT": "LATENCY",
                                            "INFERENCE_PRECISION_HINT": "f32"}
                             ).create_infer_request()
    inputs = graph_inputs(raw)
    req.infer(inputs)
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        req.infer(inputs)
        best = min(best, time.perf_counter() - t0)
    return best, req.get_output_tensor(0).data.copy()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--keep-fp32", nargs="*", default=list(INPUT_CONVS),
                    help="convolutions (name substrings) left in fp32; none: quantize all")
    args = ap.parse_args()
    stack, mask, _ = full_roi()
    det = Detector.from_file(DEFAULT_MODEL, engine="torch")
    fp32 = E.onnx_artefact(det.model, det.card.weights_sha256)
    h, w = stack.shape[1:]
    ph, pw = -(-h // 64) * 64, -(-w // 64) * 64
    raw = raw_int16(np.pad(stack, ((0, 0), (0, ph - h), (0, pw - w)), mode="reflect"))[None]
    convs = [n.name for n in onnx.load(str(fp32)).graph.node if n.op_type == "Conv"]
    keep = [n for n in convs if any(k in n for k in args.keep_fp32)]
    with tempfile.TemporaryDirectory() as tmp:
        pre, int8 = Path(tmp) / "pre.onnx", Path(tmp) / "int8.onnx"
        quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
        quantize_static(str(pre), str(int8), Tiles(raw), quant_format=QuantFormat.QDQ,
                        per_channel=True, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8, op_types_to_quantize=["Conv"],
                        nodes_to_exclude=keep)
        core = ov.Core()
        t32, y32 = timed_forward(core, fp32, raw, args.threads)
        t8, y8 = timed_forward(core, int8, raw, args.threads)
    to_p = (lambda a: (a + 1) / 2) if det.model.config.output_activation == "tanh" else (lambda a: a)
    scratch = F.max_pool2d(torch.from_numpy(np.pad(mask, ((0, ph - h), (0, pw - w)))[None]
                                            .astype(np.float32)), 2)[0].numpy() > 0
    dp = float(np.abs(to_p(y8[0, 0]) - to_p(y32[0, 0]))[scratch].max())
    print(f"CPU: {E.instruction_set()}; whole frame {pw} x {ph}, {args.threads} thread(s); "
          f"{len(convs) - len(keep)} of {len(convs)} convolutions int8 (fp32: "
          f"{', '.join(keep) or 'none'})")
    print(f"  OpenVINO fp32 {t32:.2f} s, int8 (QDQ) {t8:.2f} s ({t32 / t8:.2f}x faster); "
          f"max |dp| on scratch pixels {dp:.3f} -> {'safe' if dp <= MAX_DP else 'NOT safe'} "
          f"(bound {MAX_DP})")


if __name__ == "__main__":
    main()
