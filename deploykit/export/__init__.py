"""Export: PyTorch zoo model -> checked ONNX (FP32 or FP16) inside a parity-proven artifact."""

from deploykit.export.api import default_out_dir, export_model

__all__ = ["default_out_dir", "export_model"]
