"""Training data for ``cnndsl train --data SOURCE``, fitted to the network's input.

A source is one of::

    digits                           the 1,797 UCI handwritten digits bundled with cnndsl
    train.npz                        arrays x (or images) and y (or labels)
    train-images-idx3-ubyte.gz       MNIST's IDX format; the labels file is found by its name,
    IMAGES,LABELS                    or named after a comma
    pets/                            a folder of class folders of images (pets/cat/1.png ...)
    images/ with masks/              images and mask images of the same names: a class per pixel

For ``network lenet5 { input 1x32x32 ... }``, MNIST's 28x28 images are padded to 32x32,
RGB becomes luminance, larger images are scaled down to fit. Every problem with the data is
a :class:`CnnError` with a code E100-E116 (docs/data.md) and a message starting ``--data SOURCE:``
(or ``--masks FOLDER:``).
"""

from __future__ import annotations

import gzip
import io
import os
import re
import struct
import zlib
from dataclasses import dataclass, field
from fractions import Fraction
from math import prod

import numpy as np

from cnndsl.errors import CnnError
from cnndsl.files import read_bytes
from cnndsl.train.interpolation import linear_weights

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".pgm", ".ppm", ".tif", ".tiff", ".webp")
MAX_CLASSES = 100_000  # a label beyond this is a mistake (a pixel array given as y), not a class
LUMINANCE = (0.299, 0.587, 0.114)  # ITU-R BT.601, as Pillow's RGB -> L
IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


@dataclass(frozen=True)
class Preprocessing:
    """How raw samples become the network's input; ``train`` records it (cnndsl.train.contract) so that
    ``run`` and ``predict`` prepare their inputs with the same functions.

    ``scale``: integer values are pixels 0..scale, divided by it (255; the bundled digits count 0..16);
    floats are used as they are. ``resize``: ``fit`` pads smaller samples centred and scales larger ones
    down keeping the aspect ratio (arrays, the digits); ``stretch`` resizes to the input's size (folders
    of images: Pillow's bilinear for image files). ``upscale``: a whole factor applied before fitting
    (the digits' 8x8 to about 3/4 of the input).
    """

    scale: int = 255
    resize: str = "fit"
    upscale: int = 1


@dataclass(frozen=True)
class Data:
    """Samples fitted to a network's input: ``x`` (N, *input_shape) float32, ``y`` (N,) int64."""

    x: np.ndarray
    y: np.ndarray
    classes: int  # how many classes the labels use: max label + 1, the one-hot width, or the class folders
    names: tuple[str, ...]  # class names: the folder names, else "0", "1", ...
    description: str  # one line for the CLI, starting with the source: "digits: 1,797 images 8x8 ..."
    preprocessing: Preprocessing = field(default_factory=Preprocessing)  # what was done to the raw samples


def load_data(
    source: str,
    input_shape: tuple[int, ...],
    classes: int | None = None,
    *,
    label_shape: tuple[int, ...] | None = None,
    masks: str | None = None,
    ignore_index: int | None = None,
) -> Data:
    """Load ``source`` and fit it to ``input_shape`` (the network's input without the batch).

    ``classes`` is the network's number of outputs: labels must then be below it.
    For ``network lenet5(classes = 10) { input 1x32x32 ... }``::

        load_data("digits", (1, 32, 32), 10).x.shape == (1797, 1, 32, 32)

    Per-position labels (segmentation): ``label_shape`` is the spatial size of the network's
    output (``(32, 32)`` for an output ``3x32x32``); an ``.npz`` whose ``y`` is (N, *label_shape)
    then gives a class per position, and ``masks`` names a folder of mask images matching the
    images of the folder ``source`` by name. ``ignore_index``: a label value that marks
    unlabelled positions (VOC's 255), allowed beside the classes.
    """
    shape = tuple(int(d) for d in input_shape)
    fail = _failer(source)
    if not shape or min(shape) < 1:
        raise fail("E115", f"the network's input {_dims(shape)} is not a shape data can be fitted to")
    dense = DenseLabels(tuple(label_shape), ignore_index) if label_shape is not None else None
    if masks is not None:
        if dense is None or prod(dense.shape) == 1:
            raise CnnError(
                "--masks gives a class per pixel; the network's output has no spatial positions", code="E116"
            )
        return _mask_folder(source, masks, shape, classes, dense, fail)
    if source == "digits":
        return _digits(shape, classes, fail)
    if not source.strip():
        raise fail("E100", "empty source; " + _EXPECTED)
    if os.path.isdir(source):
        return _folder(source, shape, classes, fail)
    if source.lower().endswith(".npz"):
        return _npz(source, shape, classes, fail, dense)
    if "," in source and not os.path.exists(source):
        parts = [p.strip() for p in source.split(",")]
        if len(parts) != 2 or not all(parts):
            raise fail("E100", f"expected IMAGES,LABELS (two IDX files); received {len(parts)} comma-separated parts")
        return _idx(source, parts[0], parts[1], shape, classes, fail)
    if re.search(r"idx\d", os.path.basename(source), re.IGNORECASE):
        return _idx(source, source, None, shape, classes, fail)
    if not os.path.exists(source):
        raise fail("E100", "no such file or folder; " + _EXPECTED)
    raise fail("E100", "not a source cnndsl reads; " + _EXPECTED)


def split(data: Data, held_out: float = 0.2, seed: int = 0) -> tuple[Data, Data]:
    """Split into (train, held-out): ``held_out`` of each class, rounded, chosen by ``seed``.

    Every class keeps at least one sample for training; the held-out part is empty only when
    every class has a single sample. The same data and seed always give the same split.
    """
    fail = _failer(data.description.split(": ", 1)[0])
    if not 0 < held_out < 1:
        raise fail("E114", f"the held-out fraction must be between 0 and 1; received {held_out}")
    if len(data.y) < 2:
        raise fail("E114", f"splitting off held-out data needs at least 2 samples; the data has {len(data.y)}")
    rng = np.random.default_rng(seed)
    if data.y.ndim > 1:  # per-pixel labels: whole images, chosen at random (a class is not a sample's)
        count = min(max(int(np.floor(held_out * len(data.y) + 0.5)), 1), len(data.y) - 1)
        order = rng.permutation(len(data.y))
        train_idx, held_idx = np.sort(order[count:]), np.sort(order[:count])
        return _part(data, train_idx, "for training"), _part(data, held_idx, "held out")
    by_class = np.argsort(data.y, kind="stable")
    members = np.split(by_class, np.cumsum(np.bincount(data.y, minlength=data.classes))[:-1])
    counts = [min(int(np.floor(held_out * len(m) + 0.5)), len(m) - 1) if len(m) else 0 for m in members]
    if sum(counts) == 0:  # small data: hold out one sample of the largest class that can spare one
        largest = max(range(len(members)), key=lambda k: len(members[k]))
        counts[largest] = 1 if len(members[largest]) > 1 else 0
    train, held = [], []
    for m, count in zip(members, counts):
        order = rng.permutation(m)
        held.append(order[:count])
        train.append(order[count:])
    train_idx, held_idx = np.sort(np.concatenate(train)), np.sort(np.concatenate(held))
    return _part(data, train_idx, "for training"), _part(data, held_idx, "held out")


def _part(data: Data, idx: np.ndarray, what: str) -> Data:
    desc = f"{data.description}; {len(idx):,} {what}"
    return Data(data.x[idx], data.y[idx], data.classes, data.names, desc, data.preprocessing)


@dataclass(frozen=True)
class DenseLabels:
    """What per-position labels must be: ``shape`` the spatial size of the network's output
    (``(32, 32)`` for ``3x32x32``), ``ignore`` the value marking unlabelled positions (or None)."""

    shape: tuple[int, ...]
    ignore: int | None = None

    def applies(self, y: np.ndarray) -> bool:
        """Whether ``y`` is meant as a class per position: (N, H, W ...) rather than (N,), (N, 1) or one-hot (N, K)."""
        return prod(self.shape) > 1 and y.ndim >= 2 and (y.ndim > 2 or len(self.shape) == 1)


_EXPECTED = "expected 'digits', FILE.npz, an MNIST IDX images file (or IMAGES,LABELS), or a folder of class folders"


def _failer(source: str):
    def fail(code: str, message: str) -> CnnError:
        return CnnError(f"--data {source}: {message}", code=code)

    return fail


def _dims(shape) -> str:
    return "x".join(str(d) for d in shape)


# ---------------------------------------------------------------------------------------------
# Sources


def _digits(shape, classes, fail) -> Data:
    from importlib.resources import files

    try:
        with np.load(io.BytesIO(files("cnndsl.train.datasets").joinpath("digits.npz").read_bytes())) as f:
            images, target = f["images"], f["target"]
    except Exception as err:  # noqa: BLE001 - a damaged installation; the file itself is tested
        raise fail("E101", f"the bundled digits.npz cannot be read ({err}); reinstall cnndsl") from None
    prep = Preprocessing(scale=16)  # UCI values count set pixels in 4x4 blocks: 0..16
    if len(shape) == 3:
        # Upscale by a whole factor to about 3/4 of the input, leaving a border as MNIST does.
        prep = Preprocessing(16, "fit", max(1, 3 * min(shape[1:]) // 32))  # the largest k with 8k <= 0.75 min(H, W)
    elif len(shape) != 1:
        raise fail("E115", f"the digits are 8x8 images; the network's input {_dims(shape)} takes CxHxW or a vector")
    y, k = _labels(target, classes, fail)
    x, fitted = prepare(images[:, None], shape, prep, fail)
    what = ", ".join(fitted) or "used as is"
    names = tuple(str(i) for i in range(k))
    return Data(x, y, k, names, f"digits: {len(y):,} images 8x8 (UCI), {what}", prep)


def _npz(source, shape, classes, fail, dense=None) -> Data:
    raw = read_bytes(source, "E101", f"--data {source}", missing="E100")
    try:
        f = np.load(io.BytesIO(raw), allow_pickle=False)
        if not isinstance(f, np.lib.npyio.NpzFile):
            raise fail("E101", "expected a .npz archive of arrays x and y; received a single .npy array")
        with f:
            keys = f.files
            xkey = next((k for k in ("x", "images") if k in keys), None)
            ykey = next((k for k in ("y", "labels") if k in keys), None)
            if xkey is None or ykey is None:
                found = ", ".join(keys) or "none"
                raise fail("E102", f"expected arrays x and y (or images and labels); the file has: {found}")
            x, y = f[xkey], f[ykey]
    except CnnError:
        raise
    except Exception as err:  # noqa: BLE001 - zip, zlib, .npy header, pickle errors: a damaged file
        raise fail("E101", f"cannot read it as .npz ({type(err).__name__}: {err})") from None
    return _arrays(source, x, y, shape, classes, fail, xkey, ykey, dense=dense)


def _idx(source, images, labels, shape, classes, fail) -> Data:
    x = _read_idx(source, images, fail)
    if labels is None:
        labels = _labels_file(images, fail)
    y = _read_idx(source, labels, fail)
    if x.ndim == 1 and y.ndim > 1:
        raise fail("E109", f"{images} holds labels and {labels} images; give the images file first")
    if y.ndim != 1:
        raise fail("E109", f"{labels}: expected a labels file (1 dimension, magic 0x00000801); it has {y.ndim}")
    return _arrays(source, x, y, shape, classes, fail, "images", "labels", f" (labels: {os.path.basename(labels)})")


def _folder(source, shape, classes, fail) -> Data:
    if len(shape) != 3:
        raise fail("E115", f"a folder of images needs a network with input CxHxW; its input is {_dims(shape)}")
    c, h, w = shape
    try:
        names = sorted(e.name for e in os.scandir(source) if e.is_dir() and not e.name.startswith("."))
        files, labels = [], []
        for k, name in enumerate(names):
            folder = os.path.join(source, name)
            found = sorted(
                e.path
                for e in os.scandir(folder)
                if e.is_file() and not e.name.startswith(".") and e.name.lower().endswith(IMAGE_SUFFIXES)
            )
            if not found:
                raise fail("E112", f"class folder {name}/ has no images (expected {', '.join(IMAGE_SUFFIXES)} files)")
            files += found
            labels += [k] * len(found)
    except OSError as err:
        raise fail("E101", f"cannot list the folder ({err})") from None
    if not names:
        raise fail("E112", "expected one folder per class (e.g. cat/, dog/) holding images; found no class folders")
    _check_classes(len(names), classes, f"there are {len(names)} class folders", fail)
    prep = Preprocessing(255, "stretch")
    x = np.empty((len(files), c, h, w), np.float32)
    for i, path in enumerate(files):
        x[i] = read_image(path, shape, prep, fail)[0][0]
    desc = f"{source}: {len(files):,} images in {len(names)} classes, resized to {_dims(shape)}"
    return Data(x, np.array(labels, np.int64), len(names), tuple(names), desc, prep)


# ---------------------------------------------------------------------------------------------
# MNIST's IDX files: magic 0x0000TTNN (TT the element type, NN the rank), big-endian uint32 sizes, data.


def _labels_file(images: str, fail) -> str:
    """``train-images-idx3-ubyte.gz`` -> ``train-labels-idx1-ubyte.gz`` (or without .gz), if it exists."""
    head, name = os.path.split(images)
    m = re.search(r"images([-.])idx3-ubyte", name)
    if not m:
        raise fail(
            "E111",
            "cannot tell the labels file from this name (MNIST names images files "
            "NAME-images-idx3-ubyte); give both as --data IMAGES,LABELS",
        )
    name = name[: m.start()] + f"labels{m.group(1)}idx1-ubyte" + name[m.end() :]
    other = name[:-3] if name.endswith(".gz") else name + ".gz"
    for candidate in (name, other):
        if os.path.isfile(os.path.join(head, candidate)):
            return os.path.join(head, candidate)
    raise fail(
        "E111",
        f"expected the labels file {os.path.join(head, name)} beside it; it does not exist "
        "(give both as --data IMAGES,LABELS)",
    )


def _read_idx(source: str, path: str, fail) -> np.ndarray:
    raw = read_bytes(path, "E101", f"--data {source}: {path}", missing="E100")
    if raw[:2] == b"\x1f\x8b":  # gzip, whatever the name says
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as err:  # gzip.BadGzipFile is an OSError
            raise fail("E101", f"{path}: cannot read it ({type(err).__name__}: {err})") from None
    if len(raw) < 4 or raw[0] or raw[1] or raw[2] not in IDX_TYPES or raw[3] == 0:
        got = f"0x{raw[:4].hex()}" if raw else "an empty file"
        raise fail(
            "E109",
            f"{path}: not an IDX file; expected magic 0x00000803 (images) or 0x00000801 (labels); received {got}",
        )
    dtype, rank = np.dtype(IDX_TYPES[raw[2]]), raw[3]
    header = 4 + 4 * rank
    if len(raw) < header:
        raise fail("E110", f"{path}: truncated IDX header; expected {header} bytes, the file has {len(raw)}")
    sizes = struct.unpack(f">{rank}I", raw[4:header])
    need, have = prod(sizes) * dtype.itemsize, len(raw) - header
    if have != need:
        why = "truncated" if have < need else "extra bytes at the end"
        raise fail(
            "E110",
            f"{path}: the header promises {_dims(sizes)} {dtype.name} = {need:,} bytes of data; "
            f"the file has {have:,} ({why})",
        )
    return np.frombuffer(raw, dtype, offset=header).reshape(sizes)


# ---------------------------------------------------------------------------------------------
# Arrays: checks, labels, and fitting to the network's input


def _arrays(source, x, y, shape, classes, fail, xname="x", yname="y", where="", dense=None) -> Data:
    if x.ndim == 0 or (x.size == 0 and len(x) > 0):
        raise fail("E103", f"{xname} has shape {x.shape}; expected one sample per row, (N, ...)")
    if y.ndim == 0 or len(x) != len(y):
        ylen = "a scalar" if y.ndim == 0 else f"{len(y):,} labels"
        raise fail("E106", f"{xname} has {len(x):,} samples but {yname} has {ylen}; expected one label per sample")
    if len(x) == 0:
        raise fail("E107", f"{xname} and {yname} hold no samples")
    sample, dtype = _dims(x.shape[1:]), x.dtype
    if dense is not None and dense.applies(y):
        labels, k = _pixel_labels(y, classes, dense, fail, yname)
        per = f"per pixel {_dims(dense.shape)}"
    else:
        labels, k = _labels(y, classes, fail, yname)
        per = ""
    x, notes = prepare(x, shape, Preprocessing(), fail, xname)
    what = ", ".join(notes) or "used as is"
    classes_text = f"{k} classes {per}".strip()
    desc = f"{source}: {len(x):,} samples {sample} {dtype}{where}, {classes_text}, {what}"
    return Data(x, labels, k, tuple(str(i) for i in range(k)), desc)


def prepare(x: np.ndarray, shape, prep: Preprocessing, fail, xname: str = "x") -> tuple[np.ndarray, list[str]]:
    """Raw samples x (N, ...) as the network's input (N, *shape) float32, and what was done, in words:
    the one definition of ``train``'s preprocessing, which ``run`` and ``predict`` apply too."""
    return _fit(_pixels(x, xname, fail, prep.scale), tuple(shape), fail, xname, prep.upscale, prep.resize)


def read_image(path: str, shape, prep: Preprocessing, fail) -> tuple[np.ndarray, list[str]]:
    """One image file as (1, *shape) float32 and what was done, in words: luminance for a 1-channel
    input, else RGB (a 1-channel image replicated to other channel counts), 8-bit pixels divided by
    255. ``stretch``: resized to the input's size with Pillow's bilinear filter (as ``train`` reads a
    folder); ``fit``: fitted as arrays are."""
    if len(shape) != 3:
        raise fail("E115", f"images need a network with input CxHxW; its input is {_dims(shape)}")
    c, h, w = shape
    try:
        from PIL import Image
    except ImportError:
        raise fail("E113", "reading images needs Pillow (pip install pillow)") from None
    mode = "RGB" if c == 3 else "L"
    try:
        with Image.open(path) as im:
            im = im.convert(mode)
            if prep.resize == "stretch":
                im = im.resize((w, h), Image.Resampling.BILINEAR)
            pixels = np.asarray(im, np.uint8)
    except Exception as err:  # noqa: BLE001 - Pillow raises OSError, SyntaxError, ValueError ...
        raise fail("E113", f"cannot read image {path} ({type(err).__name__}: {err})") from None
    pixels = pixels.transpose(2, 0, 1)[None] if mode == "RGB" else pixels[None, None]
    x = pixels.astype(np.float32) / np.float32(255)  # an image file's pixels are 8-bit whatever the model's scale
    x, notes = _fit(x, (pixels.shape[1], *shape[1:]), fail, path, prep.upscale, prep.resize)
    if x.shape[1] != c:
        x = np.repeat(x, c, axis=1)
        notes.append(f"replicated to {c} channels")
    size = f"{pixels.shape[2]}x{pixels.shape[3]} " if prep.resize != "stretch" else ""
    return x, [f"{size}{mode}"] + notes


def _pixels(x: np.ndarray, xname: str, fail, scale: int = 255) -> np.ndarray:
    """Numbers as float32: integers are pixels 0..scale (divided by it), floats are used as they are."""
    if x.dtype.kind == "b":
        return x.astype(np.float32)
    if x.dtype.kind in "iu":
        lo, hi = int(x.min()), int(x.max())
        if lo < 0 or hi > scale:
            what = "8-bit pixels 0..255" if scale == 255 else f"pixels 0..{scale} (as the model's training data)"
            raise fail(
                "E104",
                f"integer {xname} must be {what}; received values {lo}..{hi} (store floats to use values as they are)",
            )
        return x.astype(np.float32) / np.float32(scale)
    if x.dtype.kind != "f":
        raise fail("E104", f"{xname} has dtype {x.dtype}; expected integers (pixels 0..255) or floats")
    with np.errstate(over="ignore"):  # values beyond float32 become inf, reported below
        x = x.astype(np.float32)
    bad = ~np.isfinite(x)
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        raise fail("E104", f"{xname} has {int(bad.sum()):,} NaN or infinite values (as float32), the first at {where}")
    return x


def _labels(y: np.ndarray, classes: int | None, fail, yname: str = "y") -> tuple[np.ndarray, int]:
    """Class indices (N,) int64 and the number of classes; y may be (N,), (N, 1) or one-hot (N, K)."""
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.dtype.kind not in "biuf":
        raise fail("E105", f"{yname} has dtype {y.dtype}; expected integer class labels")
    if y.ndim == 2:
        rows_ok = ((y == 0) | (y == 1)).all(axis=1) & (y.sum(axis=1) == 1)
        if not rows_ok.all():
            row = int(np.flatnonzero(~rows_ok)[0])
            raise fail("E105", f"{yname} has shape {y.shape}, read as one-hot, but row {row} is {y[row].tolist()}")
        width = y.shape[1]
        _check_classes(width, classes, f"the labels are one-hot over {width} classes", fail)
        return y.argmax(axis=1).astype(np.int64), width
    if y.ndim != 1:
        raise fail("E105", f"{yname} has shape {y.shape}; expected labels (N,) or one-hot (N, K)")
    whole = np.isfinite(y) & (y == np.round(y)) if y.dtype.kind == "f" else np.ones(len(y), bool)
    if not whole.all():
        i = int(np.flatnonzero(~whole)[0])
        raise fail("E105", f"{yname}[{i}] is {y[i]}; expected whole-number class labels")
    lo, hi = y.min(), y.max()
    if lo < 0:
        raise fail("E105", f"{yname} has the label {lo}; expected labels 0, 1, 2 ...")
    top = int(hi)
    _check_classes(top + 1, classes, f"labels go up to {top}", fail)
    if top >= MAX_CLASSES:
        raise fail("E105", f"labels go up to {top:,}; expected at most {MAX_CLASSES:,} classes")
    return y.astype(np.int64), top + 1


def _pixel_labels(y: np.ndarray, classes: int | None, dense: DenseLabels, fail, yname: str = "y"):
    """Per-position class indices (N, *dense.shape) int64 and the number of classes (the network's
    outputs, else the largest label + 1); ``dense.ignore`` may appear beside them."""
    if tuple(y.shape[1:]) != dense.shape:
        out = _dims(((classes,) if classes else ()) + dense.shape)
        want = ", ".join(map(str, (len(y), *dense.shape)))
        raise fail(
            "E105",
            f"{yname} has shape {y.shape}; per-pixel labels for the network's output {out} must be ({want})",
        )
    if y.dtype.kind not in "biuf":
        raise fail("E105", f"{yname} has dtype {y.dtype}; expected integer class labels per pixel")
    if y.dtype.kind == "f":
        whole = np.isfinite(y) & (y == np.round(y))
        if not whole.all():
            where = tuple(int(i) for i in np.argwhere(~whole)[0])
            raise fail("E105", f"{yname}{list(where)} is {y[where]}; expected whole-number class labels")
    labels = y.astype(np.int64)
    keep = labels != dense.ignore if dense.ignore is not None else np.ones(labels.shape, bool)
    if not keep.any():
        raise fail("E105", f"every pixel of {yname} is --ignore-index {dense.ignore}; nothing is labelled")
    lo, hi = int(labels[keep].min()), int(labels[keep].max())
    if lo < 0:
        raise fail("E105", f"{yname} has the label {lo}; expected labels 0, 1, 2 ... (or --ignore-index)")
    if classes is not None and hi >= classes:
        hint = " (unlabelled pixels marked 255, as in VOC masks: give --ignore-index 255)" if hi == 255 else ""
        raise fail(
            "E108",
            f"{yname} has the label {hi} but the network has {classes} outputs{hint}; give -D classes={hi + 1} "
            f"(if the network has that parameter) or make its last layer {hi + 1} wide",
        )
    if hi >= MAX_CLASSES:
        raise fail("E105", f"labels go up to {hi:,}; expected at most {MAX_CLASSES:,} classes")
    return labels, classes if classes is not None else hi + 1


def _mask_folder(source, masks, shape, classes, dense: DenseLabels, fail) -> Data:
    """``--data images/ --masks masks/``: images and mask images of the same names (any image
    suffix); a mask's pixel values are class indices (a palette or greyscale image)."""

    def mfail(code: str, message: str) -> CnnError:
        return CnnError(f"--masks {masks}: {message}", code=code)

    if len(shape) != 3 or len(dense.shape) != 2:
        out = _dims(((classes,) if classes else ()) + dense.shape)
        raise fail("E115", f"images and masks need a network CxHxW to KxHxW; it is {_dims(shape)} to {out}")
    if not os.path.isdir(source):
        raise fail("E100", "with --masks, expected a folder of images (the masks' names match theirs)")
    if not os.path.isdir(masks):
        raise mfail("E116", "no such folder; expected a folder of mask images named as the images of --data")
    images, found = _by_stem(source, fail), _by_stem(masks, mfail)
    if not images:
        raise fail("E112", f"expected images ({', '.join(IMAGE_SUFFIXES)} files) beside --masks; found none")
    missing = [images[k] for k in images if k not in found]
    extra = [found[k] for k in found if k not in images]
    for files, what in ((missing, f"no mask (same name in {masks}) for"), (extra, f"no image in {source} for")):
        if files:
            names = ", ".join(os.path.basename(f) for f in files[:5]) + (" ..." if len(files) > 5 else "")
            raise mfail("E116", f"{what} {len(files)} file{'s' if len(files) != 1 else ''}: {names}")
    try:
        from PIL import Image
    except ImportError:
        raise fail("E113", "reading images needs Pillow (pip install pillow)") from None
    prep = Preprocessing(255, "stretch")
    stems = sorted(images)
    x = np.empty((len(stems), *shape), np.float32)
    y = np.empty((len(stems), *dense.shape), np.int64)
    oh, ow = dense.shape
    for i, stem in enumerate(stems):
        x[i] = read_image(images[stem], shape, prep, fail)[0][0]
        path = found[stem]
        try:
            with Image.open(images[stem]) as im:
                size = im.size
            with Image.open(path) as m:
                mode = m.mode
                if mode not in ("P", "L", "1", "I", "I;16", "I;16B", "I;16L"):
                    raise mfail(
                        "E116",
                        f"{os.path.basename(path)} is a {mode} image; expected class indices per pixel "
                        "(a palette (P) or greyscale (L) PNG)",
                    )
                if m.size != size:
                    raise mfail(
                        "E116",
                        f"{os.path.basename(path)} is {m.size[0]}x{m.size[1]} (width x height) but its image "
                        f"{os.path.basename(images[stem])} is {size[0]}x{size[1]}",
                    )
                if m.size != (ow, oh):
                    m = m.resize((ow, oh), Image.Resampling.NEAREST)
                pixels = np.asarray(m)
        except CnnError:
            raise
        except Exception as err:  # noqa: BLE001 - Pillow raises OSError, SyntaxError, ValueError ...
            raise mfail("E113", f"cannot read image {path} ({type(err).__name__}: {err})") from None
        y[i] = _pixel_labels(pixels[None], classes, dense, mfail, os.path.basename(path))[0][0]
    k = classes if classes is not None else int(y[y != dense.ignore].max()) + 1
    desc = (
        f"{source}: {len(stems):,} images with masks {masks}, resized to {_dims(shape)}, "
        f"masks to {_dims(dense.shape)} (nearest), {k} classes per pixel"
    )
    return Data(x, y, k, tuple(str(i) for i in range(k)), desc, prep)


def _by_stem(folder: str, fail) -> dict[str, str]:
    """The image files of a folder by name without the suffix; two files of one name are an error."""
    try:
        files = sorted(
            e.path
            for e in os.scandir(folder)
            if e.is_file() and not e.name.startswith(".") and e.name.lower().endswith(IMAGE_SUFFIXES)
        )
    except OSError as err:
        raise fail("E101", f"cannot list the folder ({err})") from None
    out: dict[str, str] = {}
    for path in files:
        stem = os.path.splitext(os.path.basename(path))[0]
        if stem in out:
            names = f"{os.path.basename(out[stem])} and {os.path.basename(path)}"
            raise fail("E116", f"two files named {stem}: {names}; expected one per name")
        out[stem] = path
    return out


def _check_classes(k: int, classes: int | None, what: str, fail) -> None:
    if classes is not None and k > classes:
        raise fail(
            "E108",
            f"{what} but the network has {classes} outputs; give -D classes={k} "
            f"(if the network has that parameter) or make its last layer {k} wide",
        )


def _fit(
    x: np.ndarray, shape: tuple[int, ...], fail, xname: str = "x", upscale: int = 1, resize: str = "fit"
) -> tuple[np.ndarray, list[str]]:
    """Fit float32 samples x (N, ...) to ``shape``; returns the array and what was done, in words.

    Channels first (N, C, *S), without channels (N, *S), or channels last (N, *S, 1|3); 1 channel
    is replicated, 3 become luminance; then ``upscale`` (a whole factor); then (``resize="fit"``)
    smaller sizes are padded centred, larger ones scaled down, or (``"stretch"``) resized to ``shape``.
    A vector input (``input 784``) takes any sample with that many values, flattened.
    """
    n, sample = x.shape[0], x.shape[1:]
    if len(shape) == 1:
        if prod(sample) != shape[0]:
            raise fail(
                "E103",
                f"each sample of {xname} has {prod(sample):,} values ({_dims(sample)}); "
                f"the network's input is a vector of {shape[0]:,}",
            )
        return x.reshape(n, -1), ([] if x.ndim == 2 else ["flattened"])
    c, target = shape[0], shape[1:]
    notes = []

    def fits(k):
        return k in (c, 1) or (k == 3 and c == 1)

    given = x.shape
    if x.ndim == len(shape):  # no channel axis: one channel
        x = x[:, None]
    elif x.ndim != len(shape) + 1:
        spatial = ", ".join(map(str, target))
        layouts = f"(N, {c}, {spatial}), (N, {spatial}) or (N, {spatial}, C)"
        raise fail("E103", f"{xname} has shape {given}; expected {layouts} for the network's input {_dims(shape)}")
    elif x.shape[1] != c and not fits(x.shape[1]) and x.shape[-1] in (1, 3):  # channels last (NHWC)
        x = np.moveaxis(x, -1, 1)
        notes.append("channels last to first")
    k = x.shape[1]
    if not fits(k):
        raise fail(
            "E103",
            f"{xname} has shape {given}, {k} channels; the network's input {_dims(shape)} takes "
            f"{c} (1 channel is replicated, 3 become luminance for a 1-channel network)",
        )
    if k == 3 and c == 1:
        x = np.tensordot(np.array(LUMINANCE, np.float32), x, axes=([0], [1]))[:, None]
        notes.append("RGB to luminance")
    if upscale > 1:
        x = _resize(x, tuple(s * upscale for s in x.shape[2:]))
        notes.append(f"upscaled {upscale}x to {_dims(x.shape[2:])}")
    size = x.shape[2:]
    if size != target and resize == "stretch":
        x = _resize(x, target)
        notes.append(f"resized to {_dims(target)}")
    elif size != target:
        if any(s > t for s, t in zip(size, target)):
            scale = min(Fraction(t, s) for s, t in zip(size, target))
            size = tuple(max(1, int(s * scale)) for s in size)
            x = _resize(x, size)
            notes.append(f"scaled down to {_dims(size)}")
        if size != target:
            pads = [(0, 0), (0, 0)] + [((t - s) // 2, t - s - (t - s) // 2) for s, t in zip(size, target)]
            x = np.pad(x, pads)
            notes.append(f"padded to {_dims(shape)}")
    if k == 1 and c != 1:
        x = np.repeat(x, c, axis=1)
        notes.append(f"replicated to {c} channels")
    return np.ascontiguousarray(x, np.float32), notes


def _resize(x: np.ndarray, size: tuple[int, ...]) -> np.ndarray:
    """Linear interpolation of the trailing axes of x to ``size``, one axis at a time."""
    first = x.ndim - len(size)
    for axis, (n_in, n_out) in enumerate(zip(x.shape[first:], size), start=first):
        if n_in != n_out:
            weights = linear_weights(n_in, n_out).astype(np.float32)  # PyTorch's bilinear, per axis
            x = np.moveaxis(np.tensordot(x, weights, axes=([axis], [1])), -1, axis)
    return x.astype(np.float32, copy=False)


# ---------------------------------------------------------------------------------------------
# Augmentation of training batches (``cnndsl train --augment flip,crop``)

AUGMENTATIONS = ("flip", "crop")


@dataclass(frozen=True)
class Augment:
    """What ``--augment`` asked for: ``flip`` (random horizontal flip) and ``crop`` (the padding P of
    a random crop; 0: none)."""

    flip: bool = False
    crop: int = 0

    def spec(self) -> str:
        """As ``--augment`` writes it, in one order: ``flip,crop=4`` (recorded in the checkpoint)."""
        return ",".join((["flip"] if self.flip else []) + ([f"crop={self.crop}"] if self.crop else []))

    def describe(self) -> str:
        """``random crop (zero padding 4), then horizontal flip``: what the epochs' batches get."""
        parts = ([f"random crop (zero padding {self.crop})"] if self.crop else []) + (
            ["horizontal flip (p = 1/2)"] if self.flip else []
        )
        return ", then ".join(parts)


def parse_augment(text: str, shape) -> Augment:
    """``--augment flip,crop`` (or ``crop=P``, default P = 4) for a network with input ``shape``;
    anything else is a :class:`CnnError` E084 (with a did-you-mean hint)."""
    from cnndsl.errors import did_you_mean

    flip, crop = False, 0
    for word in [w.strip() for w in text.split(",")]:
        name, _, value = word.partition("=")
        if name not in AUGMENTATIONS:
            hint = did_you_mean(name, AUGMENTATIONS) or f"; expected {' or '.join(AUGMENTATIONS)}"
            raise CnnError(f"--augment: unknown augmentation '{word}'{hint}", code="E084")
        if (name == "flip" and (flip or value)) or (name == "crop" and crop):
            why = "flip takes no value" if value and name == "flip" else f"{name} is given twice"
            raise CnnError(f"--augment {text}: {why}", code="E084")
        if name == "crop":
            if value and not (value.isdigit() and int(value) >= 1):
                raise CnnError(f"--augment {text}: crop=P takes a padding of at least 1 pixel", code="E084")
            crop = int(value) if value else 4
        flip = flip or name == "flip"
    if len(shape) != 3:
        raise CnnError(f"--augment flips and crops images; the network's input is {_dims(shape)}", code="E084")
    return Augment(flip, crop)


def augment(aug: Augment, n: int, rng: np.random.Generator):
    """The random draws of one epoch of ``n`` samples and the function applying them to a batch.

    Drawn from ``rng`` (``train``'s shuffling generator, after the epoch's permutation, so that
    ``--seed`` reproduces a run and ``--resume`` continues it), for the j-th sample of the epoch::

        top, left = rng.integers(0, 2 * P + 1, size=(n, 2)).T    # crop (torchvision's RandomCrop(size, padding=P))
        flipped = rng.random(n) < 0.5                            # flip (RandomHorizontalFlip(p=0.5))

    and applied to a batch ``x`` (B, C, H, W) of the samples ``j``::

        padded = np.pad(x, ((0, 0), (0, 0), (P, P), (P, P)))     # zeros
        out[b] = padded[b, :, top[j]:top[j] + H, left[j]:left[j] + W]
        out[b] = out[b, :, :, ::-1]  where flipped[j]

    the crop first, then the flip (the CIFAR recipe's order). Returns ``apply(x, j)``.
    ``x`` itself is never changed (nor the held-out data, which never comes here).
    """
    p = aug.crop
    offsets = rng.integers(0, 2 * p + 1, size=(n, 2)) if p else None
    flipped = rng.random(n) < 0.5 if aug.flip else None

    def apply(batch: np.ndarray, j: np.ndarray) -> np.ndarray:
        out = batch
        if offsets is not None:
            h, w = batch.shape[2:]
            padded = np.pad(batch, ((0, 0), (0, 0), (p, p), (p, p)))
            out = np.stack([padded[b, :, t : t + h, s : s + w] for b, (t, s) in enumerate(offsets[j])])
        if flipped is not None:
            out = np.where(flipped[j][:, None, None, None], out[..., ::-1], out)
        return np.ascontiguousarray(out, batch.dtype)

    return apply
