"""Serving: a Triton model repository from an artifact, and a PyTriton server over the runtime."""

from deploykit.serve.triton_repo import TritonModel, model_config, write_model_repository

__all__ = ["TritonModel", "model_config", "write_model_repository"]
