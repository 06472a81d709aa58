"""The model zoo: Inception, ResNet/ResNeXt and DenseNet, torchvision state-dict compatible."""

from deploykit.models.registry import (
    ModelSpec,
    create_model,
    get_spec,
    list_families,
    list_models,
    register_model,
    resolve_name,
)

__all__ = [
    "ModelSpec",
    "create_model",
    "get_spec",
    "list_families",
    "list_models",
    "register_model",
    "resolve_name",
]
