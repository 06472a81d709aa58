"""NNCF post-training INT8 quantisation of an ONNX model into OpenVINO IR (the peer benchmarks/cpu compares with).

Runs in a scratch venv that has ``nncf`` (never a deploykit dependency), as a subprocess of run.py:
    python nncf_ptq.py FP32.onnx CALIB.npy OUT.xml
The calibration images are the same array deploykit and quantize_static calibrate on.
"""

import sys

import nncf
import numpy as np
import openvino as ov


def main() -> None:
    fp32, calib, out = sys.argv[1:4]
    model = ov.Core().read_model(fp32)
    data = np.load(calib)
    dataset = nncf.Dataset([data[i : i + 1] for i in range(len(data))])
    quantized = nncf.quantize(model, dataset, subset_size=len(data))  # defaults: preset PERFORMANCE, MinMax
    ov.save_model(quantized, out, compress_to_fp16=False)
    print(f"nncf {nncf.__version__}: wrote {out}")


if __name__ == "__main__":
    main()
