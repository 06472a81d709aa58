"""Data configs, preprocessing and dataset readers shared by every stage."""

from deploykit.data.config import IMAGENET_MEAN, IMAGENET_STD, DataConfig

__all__ = ["DataConfig", "IMAGENET_MEAN", "IMAGENET_STD"]
