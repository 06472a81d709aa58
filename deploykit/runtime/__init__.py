"""The torch-free runtime: run an artifact from an application with numpy, Pillow and its backend.

Only numpy, Pillow and the backend that runs the artifact (ONNX Runtime, or TensorRT for an
engine) are imported here, never torch, onnx or click, so an edge box needs nothing else.
"""

from deploykit.runtime.predictor import Prediction, Predictor

__all__ = ["Prediction", "Predictor"]
