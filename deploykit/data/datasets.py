"""Labelled image datasets (idx files, ImageFolder) behind one small interface.

Every dataset gives ``len(ds)``, ``ds[i] -> (PIL.Image, int)``, ``ds.classes``, ``ds.name`` (the
spec it was opened from, recorded in manifests), ``ds.labels()`` (all labels without decoding) and
``ds.fingerprint()`` so calibration and validation sets can be recorded and overlaps detected.
Only numpy and Pillow are used: the torch-free runtime reads data through this module too.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import os
import warnings
import zlib
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np

from deploykit._io import sha256_file
from deploykit.errors import DeployKitError

FASHION_MNIST_CLASSES: tuple[str, ...] = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_ENV = "DEPLOYKIT_FASHION_MNIST_DIR"
_FASHION_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")

# idx type code -> big-endian numpy dtype (http://yann.lecun.com/exdb/mnist/ "THE IDX FILE FORMAT")
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
IDX_LABELS_MAGIC = 2049  # unsigned bytes, 1 dimension
IDX_IMAGES_MAGIC = 2051  # unsigned bytes, 3 dimensions


# --------------------------------------------------------------------------------------- idx files

_idx_cache: dict[tuple[str, int, int], np.ndarray] = {}
_hash_cache: dict[tuple[str, int, int], str] = {}


def _stat_key(path: Path) -> tuple[str, int, int]:
    st = path.stat()
    return (str(path.resolve()), st.st_size, st.st_mtime_ns)


def _read_bytes(path: Path) -> bytes:
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except FileNotFoundError:
        raise DeployKitError(f"{path}: idx file not found") from None
    except IsADirectoryError:
        raise DeployKitError(f"{path}: is a directory, expected an idx file") from None
    except OSError as e:
        raise DeployKitError(f"{path}: cannot read idx file ({e.strerror})") from None
    if raw[:2] == b"\x1f\x8b":  # gzip magic, whatever the file is called
        try:
            raw = gzip.decompress(raw)
        except (EOFError, OSError, zlib.error) as e:
            raise DeployKitError(f"{path}: corrupt or truncated gzip data ({e})") from None
    return raw


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an MNIST-style idx file (.gz or plain) into a native-endian array, checking its header."""
    p = Path(path)
    if not p.exists():
        raise DeployKitError(f"{p}: idx file not found")
    key = _stat_key(p)
    if key in _idx_cache:
        return _idx_cache[key]
    raw = _read_bytes(p)
    if len(raw) < 4:
        raise DeployKitError(f"{p}: truncated idx file ({len(raw)} bytes, no header)")
    magic = int.from_bytes(raw[:4], "big")
    code, ndim = raw[2], raw[3]
    if raw[:2] != b"\x00\x00" or code not in _IDX_DTYPES or not 1 <= ndim <= 4:
        raise DeployKitError(
            f"{p}: bad idx magic number {magic:#010x} (expected {IDX_LABELS_MAGIC} for labels "
            f"or {IDX_IMAGES_MAGIC} for images); not an idx file"
        )
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DeployKitError(f"{p}: truncated idx file (header needs {header} bytes, got {len(raw)})")
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_IDX_DTYPES[code])
    expected = header + int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(raw) < expected:
        raise DeployKitError(
            f"{p}: truncated idx file (header says {'x'.join(map(str, dims))} needing {expected} bytes, got {len(raw)})"
        )
    if len(raw) > expected:
        raise DeployKitError(
            f"{p}: idx file has {len(raw) - expected} bytes more than its header ({'x'.join(map(str, dims))}) describes"
        )
    arr = np.frombuffer(raw, dtype=dtype, count=(expected - header) // dtype.itemsize, offset=header)
    arr = arr.reshape(dims).astype(dtype.newbyteorder("="), copy=False)
    arr.flags.writeable = False
    _idx_cache[key] = arr
    return arr


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 of a file, cached by (path, size, mtime) so fingerprints stay cheap."""
    p = Path(path)
    key = _stat_key(p)
    if key not in _hash_cache:
        _hash_cache[key] = sha256_file(p)
    return _hash_cache[key]


# ------------------------------------------------------------------------------------- datasets


class Dataset:
    """Base of every dataset: indexable (image, label) pairs with class names and a fingerprint."""

    name: str
    classes: tuple[str, ...]

    def __len__(self) -> int:
        raise NotImplementedError

    def __getitem__(self, index: int):
        raise NotImplementedError

    def labels(self) -> np.ndarray:
        """All labels (int64) without decoding any image."""
        raise NotImplementedError

    def source_fingerprint(self) -> str:
        """sha256 identifying the underlying files, independent of any slice."""
        raise NotImplementedError

    def indices(self) -> Sequence[int]:
        """Which items of the source this dataset holds (for overlap checks)."""
        return range(len(self))

    def fingerprint(self) -> str:
        """sha256 over the source files' hashes and the selected indices."""
        return _fingerprint(self.source_fingerprint(), self.indices())

    def _check_index(self, index: int) -> int:
        n = len(self)
        if not isinstance(index, (int, np.integer)):
            raise TypeError(f"dataset index must be an int, not {type(index).__name__}")
        if index < 0:
            index += n
        if not 0 <= index < n:
            raise IndexError(f"index {index} out of range for {self.name} ({n} items)")
        return int(index)

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, {len(self)} items, {len(self.classes)} classes)"


def _fingerprint(source: str, indices: Sequence[int]) -> str:
    h = hashlib.sha256(source.encode())
    if isinstance(indices, range):
        h.update(f"range({indices.start},{indices.stop},{indices.step})".encode())
    else:
        h.update(np.asarray(indices, dtype=np.int64).tobytes())
    return h.hexdigest()


class IdxDataset(Dataset):
    """Images and labels from a pair of idx files (MNIST / Fashion-MNIST), as grayscale PIL images."""

    def __init__(
        self,
        images_path: str | os.PathLike,
        labels_path: str | os.PathLike,
        classes: Iterable[str] | None = None,
        name: str | None = None,
    ) -> None:
        self.images_path = Path(images_path)
        self.labels_path = Path(labels_path)
        images = read_idx(self.images_path)
        labels = read_idx(self.labels_path)
        if images.ndim != 3 or images.dtype != np.uint8:
            raise DeployKitError(
                f"{self.images_path}: expected uint8 images N x H x W, got {images.dtype} with shape {images.shape}"
            )
        if labels.ndim != 1:
            raise DeployKitError(f"{self.labels_path}: expected 1-D labels, got shape {labels.shape}")
        if len(images) != len(labels):
            raise DeployKitError(
                f"{self.images_path} has {len(images)} images but {self.labels_path} has {len(labels)} labels"
            )
        self._images = images
        self._labels = labels.astype(np.int64)
        n_classes = int(self._labels.max()) + 1 if len(self._labels) else 0
        if classes is None:
            classes = [str(i) for i in range(n_classes)]
        self.classes = tuple(classes)
        if len(self._labels) and (self._labels.min() < 0 or n_classes > len(self.classes)):
            raise DeployKitError(
                f"{self.labels_path}: labels span {int(self._labels.min())}..{n_classes - 1} "
                f"but only {len(self.classes)} classes are named"
            )
        self.name = name or str(self.images_path)

    def __len__(self) -> int:
        return len(self._labels)

    def __getitem__(self, index: int):
        from PIL import Image

        i = self._check_index(index)
        return Image.fromarray(self._images[i]), int(self._labels[i])  # uint8 H x W: mode L

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """(uint8 N x H x W images, int64 labels) without PIL: the fast path for training."""
        return self._images, self._labels

    def labels(self) -> np.ndarray:
        return self._labels

    def source_fingerprint(self) -> str:
        h = hashlib.sha256()
        for p in (self.images_path, self.labels_path):
            h.update(file_sha256(p).encode())
        return h.hexdigest()


class ImageFolderDataset(Dataset):
    """One subfolder per class (sorted names) holding image files, like torchvision's ImageFolder."""

    def __init__(self, root: str | os.PathLike, name: str | None = None) -> None:
        self.root = Path(root)
        if not self.root.exists():
            raise DeployKitError(f"{self.root}: image folder not found")
        if not self.root.is_dir():
            raise DeployKitError(f"{self.root}: not a directory (expected one subfolder per class)")
        class_dirs = sorted(d for d in self.root.iterdir() if d.is_dir() and not d.name.startswith("."))
        if not class_dirs:
            raise DeployKitError(f"{self.root}: no class subfolders (expected one subfolder per class)")
        samples: list[tuple[Path, int]] = []
        for label, d in enumerate(class_dirs):
            files = sorted(
                f
                for f in d.rglob("*")
                if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS and not f.name.startswith(".")
            )
            samples.extend((f, label) for f in files)
        if not samples:
            raise DeployKitError(
                f"{self.root}: no images found in its class subfolders (extensions: {' '.join(IMAGE_EXTENSIONS)})"
            )
        self.classes = tuple(d.name for d in class_dirs)
        self.samples = samples
        self._labels = np.array([lab for _, lab in samples], dtype=np.int64)
        self.name = name or str(self.root)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        path, label = self.samples[self._check_index(index)]
        return load_image(path), label

    def labels(self) -> np.ndarray:
        return self._labels

    def source_fingerprint(self) -> str:
        h = hashlib.sha256()
        for path, label in self.samples:
            rel = path.relative_to(self.root).as_posix()
            h.update(f"{rel}\0{label}\0{file_sha256(path)}\n".encode())
        return h.hexdigest()


class Subset(Dataset):
    """A deterministic selection (a slice or explicit indices) of another dataset."""

    def __init__(self, base: Dataset, indices: Sequence[int], name: str | None = None) -> None:
        self.base = base
        if isinstance(indices, slice):
            indices = range(len(base))[indices]
        self._indices = indices if isinstance(indices, range) else np.asarray(indices, dtype=np.int64)
        n = len(base)
        if len(self._indices) and (min(self._indices) < 0 or max(self._indices) >= n):
            raise DeployKitError(f"subset of {base.name}: indices fall outside its {n} items")
        self.classes = base.classes
        self.name = name or f"{base.name}[subset of {len(self._indices)}]"

    def __len__(self) -> int:
        return len(self._indices)

    def __getitem__(self, index: int):
        return self.base[int(self._indices[self._check_index(index)])]

    def labels(self) -> np.ndarray:
        return self.base.labels()[np.asarray(self._indices, dtype=np.int64)]

    @property
    def arrays(self):
        """``arrays()`` fast path, present only when the base dataset has one (idx files)."""
        base_arrays = self.base.arrays  # AttributeError: hasattr(subset, "arrays") is False

        def arrays() -> tuple[np.ndarray, np.ndarray]:
            images, labels = base_arrays()
            if isinstance(self._indices, range):
                sl = slice(self._indices.start, self._indices.stop, self._indices.step)
                return images[sl], labels[sl]
            return images[self._indices], labels[self._indices]

        return arrays

    def source_fingerprint(self) -> str:
        return self.base.source_fingerprint()

    def indices(self) -> Sequence[int]:
        base = self.base.indices()
        if isinstance(base, range) and isinstance(self._indices, range):
            return base[self._indices.start : self._indices.stop : self._indices.step]
        return np.asarray(base)[np.asarray(self._indices, dtype=np.int64)]


def has_arrays(dataset: Dataset) -> bool:
    """True when ``dataset.arrays()`` gives the numpy fast path."""
    return hasattr(dataset, "arrays")


def overlap(a: Dataset, b: Dataset) -> int:
    """How many items two datasets share (0 when their source files differ)."""
    if a.source_fingerprint() != b.source_fingerprint():
        return 0
    return len(np.intersect1d(np.asarray(a.indices()), np.asarray(b.indices())))


def refuse_bomb(im, where: object) -> None:
    """Refuse an image over Pillow's pixel limit before decoding it (Pillow itself only warns there)."""
    from PIL import Image

    limit = Image.MAX_IMAGE_PIXELS
    if limit and im.width * im.height > limit:
        raise DeployKitError(f"{where}: refused as a decompression bomb ({im.width}x{im.height} pixels, limit {limit})")


def load_image(path: str | os.PathLike):
    """Open and fully decode an image; a file Pillow cannot read is a one-line error naming it."""
    from PIL import Image, UnidentifiedImageError

    p = Path(path)
    try:
        with no_decompression_bombs(), Image.open(p) as im:
            refuse_bomb(im, p)
            im.load()
            return im.copy() if im.mode != "P" else im.convert("RGBA")
    except FileNotFoundError:
        raise DeployKitError(f"{p}: image file not found") from None
    except IsADirectoryError:
        raise DeployKitError(f"{p}: is a directory, not an image file") from None
    except UnidentifiedImageError:
        raise DeployKitError(f"{p}: cannot decode image (not a format Pillow recognises)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise DeployKitError(f"{p}: refused as a decompression bomb ({e})") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise DeployKitError(f"{p}: cannot decode image ({e})") from None
    except Exception as e:  # Pillow's decoders raise assorted types (struct.error, ...) on bad data
        raise DeployKitError(f"{p}: cannot decode image ({e.__class__.__name__}: {e})") from None


@contextlib.contextmanager
def no_decompression_bombs() -> Iterator[None]:
    """Pillow's decompression-bomb warning raised as an error, so an oversized image is refused."""
    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        yield


# ------------------------------------------------------------------------------- Fashion-MNIST


def fashion_mnist_dir() -> Path:
    """Where the Debian package puts Fashion-MNIST (``$DEPLOYKIT_FASHION_MNIST_DIR`` overrides)."""
    env = os.environ.get(FASHION_MNIST_ENV)
    return Path(env) if env else FASHION_MNIST_DIR


def _find_idx(folder: Path, stem: str) -> Path | None:
    for cand in (folder / f"{stem}.gz", folder / stem):
        if cand.is_file():
            return cand
    return None


def fashion_mnist(split: str = "test") -> IdxDataset:
    """The Fashion-MNIST train or test split from the Debian package ``dataset-fashion-mnist``."""
    if split not in _FASHION_FILES:
        raise DeployKitError(f"Fashion-MNIST split '{split}' is not one of: train, test")
    folder = fashion_mnist_dir()
    img_stem, lab_stem = _FASHION_FILES[split]
    images, labels = _find_idx(folder, img_stem), _find_idx(folder, lab_stem)
    if images is None or labels is None:
        missing = img_stem if images is None else lab_stem
        raise DeployKitError(
            f"Fashion-MNIST {split} split not found: {folder / missing}[.gz] is missing; "
            f"install it with 'sudo apt-get install dataset-fashion-mnist' "
            f"or set {FASHION_MNIST_ENV} to a folder holding the idx files"
        )
    return IdxDataset(images, labels, FASHION_MNIST_CLASSES, name=f"fashion-mnist:{split}")
