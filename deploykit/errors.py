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
    """An optional dependency (TensorRT, onnxruntime-gpu, PyTriton) is not installed."""

    def __init__(self, package: str, extra: str, purpose: str) -> None:
        super().__init__(
            f"{purpose} needs the '{package}' package, which is not installed; "
            f"install it with: pip install 'deploykit[{extra}]'"
        )
        self.package = package
        self.extra = extra
