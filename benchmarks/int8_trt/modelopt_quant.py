"""Run NVIDIA ModelOpt's ONNX INT8 PTQ on one FP32 file (inside the ModelOpt scratch venv, not the project's).

    /work/scratch/modelopt/bin/python benchmarks/int8_trt/modelopt_quant.py FP32.onnx CALIB.npy OUT.onnx \\
        --method max --high-precision fp32

ModelOpt rewrites the file it is given, so it quantises a private copy. CALIB.npy holds the
preprocessed calibration images (N x C x H x W float32), the very arrays deploykit calibrates on.
Prints one JSON line with ModelOpt's version and the wall time of ``quantize``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("onnx", type=Path)
    ap.add_argument("calib", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--method", choices=("max", "entropy"), required=True)
    ap.add_argument("--high-precision", choices=("fp32", "fp16"), default="fp32")
    args = ap.parse_args(argv)

    import modelopt
    import numpy as np
    import onnx
    from modelopt.onnx.quantization import quantize

    calib = np.load(args.calib, allow_pickle=False)
    name = onnx.load(str(args.onnx), load_external_data=False).graph.input[0].name
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / args.onnx.name
        shutil.copyfile(args.onnx, src)
        t0 = time.perf_counter()
        quantize(
            str(src),
            quantize_mode="int8",
            calibration_method=args.method,
            calibration_data={name: calib},
            calibration_eps=["cpu"],
            high_precision_dtype=args.high_precision,
            output_path=str(args.out),
            log_level="WARNING",
        )
        seconds = time.perf_counter() - t0
    print(json.dumps({"modelopt": modelopt.__version__, "seconds": round(seconds, 2), "out": str(args.out)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
