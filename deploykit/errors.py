"""The one error type for a user's mistake: the CLI prints it on one line and exits non-zero."""


class DeployKitError(Exception):
    """A problem with what the user handed us (a file, a name, an option), not a bug."""

    def __init__(self, message: str) -> None:
        # Keep the message to one line so the CLI never prints a wall of text.
        super().__init__(" ".join(str(message).split()))


class GateError(DeployKitError):
    """A proof failed: accuracy or parity under its gate. The CLI exits with code 3 for it."""

    exit_code = 3


class MissingExtraError(DeployKitError):
    """An optional dependency (torch and onnx, TensorRT, onnxruntime-gpu, PyTriton) is not installed."""

    def __init__(self, package: str, extra: str, purpose: str) -> None:
        super().__init__(
            f"{purpose} needs the '{package}' package, which is not installed; "
            f"install it with: pip install 'deploykit[{extra}]'"
        )
        self.package = package
        self.extra = extra


# Top-level modules that only an extra installs: module -> (distribution, extra). A plain install
# is the torch-free runtime (numpy, Pillow, onnxruntime, click); the pipeline needs the rest.
EXTRA_MODULES: dict[str, tuple[str, str]] = {
    "torch": ("torch", "pipeline"),
    "onnx": ("onnx", "pipeline"),
    "onnxscript": ("onnxscript", "pipeline"),
    "onnx_ir": ("onnx-ir", "pipeline"),
    "onnxconverter_common": ("onnxconverter-common", "pipeline"),
    "safetensors": ("safetensors", "pipeline"),
    "rich": ("rich", "pipeline"),
    "matplotlib": ("matplotlib", "pipeline"),
    "tensorrt": ("tensorrt", "tensorrt"),
    "pytriton": ("nvidia-pytriton", "serve"),
    "tritonclient": ("tritonclient", "serve"),
    "jsonschema": ("jsonschema", "dev"),
}


def missing_extra(error: ImportError, purpose: str) -> MissingExtraError | None:
    """The MissingExtraError for an import that failed because an extra is not installed, else None.

    Only a module that is absent counts (``ModuleNotFoundError`` naming a module an extra
    installs); a broken install of a present package stays an ImportError with its traceback.
    """
    if not isinstance(error, ModuleNotFoundError) or not error.name:
        return None
    found = EXTRA_MODULES.get(error.name.split(".")[0])
    if found is None:
        return None
    package, extra = found
    return MissingExtraError(package, extra, purpose)
