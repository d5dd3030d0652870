"""``cnndsl predict`` and ``run --data``: read inputs (images, folders of images, ``.npy``/``.npz``),
prepare them as ``train`` prepared its data (:mod:`cnndsl.train.contract`), run the model, and
turn its outputs into classes with names and probabilities.

Files are recognised by their content, whatever their names: ``.npy`` (``\\x93NUMPY``), ``.npz`` (a zip
archive), or an image Pillow reads (PNG, JPEG, GIF, BMP, TIFF, WebP, PGM/PPM). A folder holds images,
and class folders of images whose names are the model's classes (their samples are labelled).
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass, field

import numpy as np

from cnndsl.errors import CnnError, Diagnostic
from cnndsl.files import read_bytes
from cnndsl.train.contract import UNRECORDED, Contract
from cnndsl.train.data import IMAGE_SUFFIXES, Preprocessing, _labels, prepare, read_image

IMAGE_MAGIC = (
    b"\x89PNG\r\n\x1a\n",
    b"\xff\xd8\xff",  # JPEG
    b"GIF87a",
    b"GIF89a",
    b"BM",
    b"II*\x00",  # TIFF, little-endian
    b"MM\x00*",  # TIFF, big-endian
    b"P2",  # PGM/PPM, ASCII and binary
    b"P3",
    b"P5",
    b"P6",
)


def sniff(raw: bytes) -> str | None:
    """``npy``, ``npz`` or ``image`` by the first bytes; None for anything else."""
    if raw.startswith(b"\x93NUMPY"):
        return "npy"
    if raw.startswith(b"PK\x03\x04") or raw.startswith(b"PK\x05\x06"):
        return "npz"
    if raw.startswith(IMAGE_MAGIC) or (raw[:4] == b"RIFF" and raw[8:12] == b"WEBP"):
        return "image"
    return None


@dataclass
class Inputs:
    """Prepared samples: ``x`` (N, *input shape) float32, a name per sample, labels (-1: none)."""

    x: np.ndarray
    names: list[str] = field(default_factory=list)
    labels: np.ndarray | None = None
    descriptions: list[str] = field(default_factory=list)  # one line per INPUT, what was read and done


def _failer(prefix: str):
    def fail(code: str, message: str) -> CnnError:
        return CnnError(f"{prefix}: {message}", code=code)

    return fail


def read_inputs(paths, contract: Contract, option: str = "") -> Inputs:
    """Read and prepare every path; ``option`` prefixes the messages (``--data``), else the path does."""
    xs, names, labels, descriptions = [], [], [], []
    for path in map(str, paths):
        fail = _failer(f"{option} {path}".strip())
        if os.path.isdir(path):
            x, n, y, d = _folder(path, contract, fail)
        else:
            x, n, y, d = _file(path, contract, fail, option)
        xs.append(x)
        names += n
        labels.append(y)
        descriptions.append(d)
    if not xs:
        raise CnnError("no inputs given", code="E121")
    x = np.concatenate(xs) if len(xs) > 1 else xs[0]
    y = np.concatenate(labels)
    return Inputs(x, names, y if (y >= 0).any() else None, descriptions)


def _file(path, contract, fail, option):
    code = "E092" if option == "--data" else "E121"  # run --data's code, predict's
    raw = read_bytes(path, code, f"{option} {path}".strip(), missing=code)
    kind = sniff(raw)
    if kind == "image" and contract.shape is None:
        raise fail("E115", "the model's input sizes are not fixed, so an image cannot be fitted to them; give an array")
    if kind == "image":
        x, notes = read_image(path, contract.shape, contract.preprocessing, fail)
        return x, [path], np.array([-1]), f"{path}: image, {', '.join(notes)}"
    if kind is None:
        start = raw[:8]
        raise fail(
            code,
            f"not a .npy, .npz or image file (it begins with {start!r}); "
            f"expected {', '.join(s.lstrip('.') for s in ('.npy', '.npz', *IMAGE_SUFFIXES))}",
        )
    try:
        loaded = np.load(io.BytesIO(raw), allow_pickle=False)
        if kind == "npz":
            with loaded:
                keys = loaded.files
                xkey = next((k for k in ("x", "images", "input") if k in keys), keys[0] if len(keys) == 1 else None)
                if xkey is None:
                    found = ", ".join(keys) or "none"
                    raise fail(
                        code, f"expected an array x (or images, input), or a single array; the file has: {found}"
                    )
                ykey = next((k for k in ("y", "labels") if k in keys), None)
                x, y = loaded[xkey], (loaded[ykey] if ykey else None)
        else:
            x, xkey, y, ykey = loaded, "x", None, None
    except CnnError:
        raise
    except Exception as err:  # noqa: BLE001 - zip, .npy header, pickled objects: a damaged or foreign file
        raise fail(code, f"cannot read it as .{kind} ({type(err).__name__}: {err})") from None
    if x.ndim == 0 or len(x) == 0:
        raise fail("E103", f"{xkey} has shape {x.shape}; expected one sample per row, (N, ...)")
    sample, dtype = "x".join(map(str, x.shape[1:])), x.dtype
    labels = np.full(len(x), -1)
    skipped = None
    if y is not None and y.ndim >= 3:  # a class per pixel (cnndsl train's segmentation labels): not scored here
        skipped, y = f"per-pixel labels {ykey} {'x'.join(map(str, y.shape[1:]))} not used", None
    if y is not None:
        if y.ndim == 0 or len(y) != len(x):
            raise fail("E106", f"{xkey} has {len(x):,} samples but {ykey} has {y.size:,} labels")
        labels = _labels(y, None, fail, ykey)[0]
    if contract.shape is None:  # a model whose input sizes are dynamic: the samples as they are, scaled
        x, notes = prepare(x, x.shape[1:], contract.preprocessing, fail, xkey)
    else:
        x, notes = prepare(x, contract.shape, contract.preprocessing, fail, xkey)
    if skipped:
        notes.append(skipped)
    if dtype.kind in "iu":
        notes.insert(0, f"divided by {contract.preprocessing.scale}")
    what = ", ".join(notes) or "used as is"
    names = [f"{path}[{i}]" for i in range(len(x))]
    return x, names, labels, f"{path}: {len(x):,} samples {sample} {dtype}, {what}"


def _folder(path, contract, fail):
    def images(folder):
        return sorted(
            e.path
            for e in os.scandir(folder)
            if e.is_file() and not e.name.startswith(".") and e.name.lower().endswith(IMAGE_SUFFIXES)
        )

    try:
        files = [(p, -1) for p in images(path)]
        classes = sorted(e.name for e in os.scandir(path) if e.is_dir() and not e.name.startswith("."))
        for k, name in enumerate(classes):
            if contract.classes and name not in contract.classes:
                known = ", ".join(contract.classes[:10]) + (" ..." if len(contract.classes) > 10 else "")
                raise fail("E122", f"class folder {name}/ is not one of the model's classes ({known})")
            label = contract.classes.index(name) if contract.classes else k
            files += [(p, label) for p in images(os.path.join(path, name))]
    except OSError as err:
        raise fail("E121", f"cannot list the folder ({err})") from None
    if not files:
        raise fail("E122", f"no images in the folder or its class folders (expected {', '.join(IMAGE_SUFFIXES)} files)")
    x = np.concatenate([read_image(p, contract.shape, contract.preprocessing, fail)[0] for p, _ in files])
    labelled = sum(label >= 0 for _, label in files)
    what = f", {labelled:,} in class folders" if labelled else ""
    desc = f"{path}: {len(files):,} images{what}"
    return x, [p for p, _ in files], np.array([label for _, label in files]), desc


def onnx_contract(model_bytes: bytes, where: str) -> Contract:
    """The contract an ONNX model's metadata_props record (the defaults where they record none)."""
    import onnx

    try:
        proto = onnx.ModelProto.FromString(model_bytes)
    except Exception as err:  # noqa: BLE001 - protobuf's DecodeError and friends
        raise CnnError(f"{where}: not an ONNX model ({type(err).__name__})", code="E091") from None
    props = {p.key: p.value for p in proto.metadata_props}
    dims = proto.graph.input[0].type.tensor_type.shape.dim[1:] if proto.graph.input else []
    shape = tuple(d.dim_value for d in dims) if dims and all(d.HasField("dim_value") for d in dims) else None
    if shape is None:
        return Contract(None, Preprocessing(), (), props.get("cnndsl.output", "scores"), recorded=False)
    return Contract.from_metadata(props, shape, "scores", where)


def unrecorded_warning(where: str, contract: Contract) -> Diagnostic:
    return Diagnostic(
        "warning",
        f"{where} records no preprocessing (it was not exported from a cnndsl train checkpoint); "
        f"assuming {contract.describe().removesuffix(UNRECORDED)}",
        None,
        [],
        "W120",
    )


def run_model(model_bytes: bytes, x: np.ndarray, provider: str = "auto", batch: int = 64):
    """Every output of the model for the samples x, in batches; returns (outputs by name, provider used)."""
    from cnndsl.lower.session import make_session

    sess, used = make_session(model_bytes, provider)
    inp = sess.get_inputs()[0]
    dtype = np.float16 if "float16" in inp.type else np.float64 if "double" in inp.type else np.float32
    fixed = inp.shape[0] if isinstance(inp.shape[0], int) else None
    step = fixed or batch
    names = [o.name for o in sess.get_outputs()]
    parts: dict[str, list] = {n: [] for n in names}
    for i in range(0, len(x), step):
        chunk = x[i : i + step].astype(dtype)
        if fixed and len(chunk) < fixed:  # a model exported with --batch N: fill the last batch
            chunk = np.concatenate([chunk, np.zeros((fixed - len(chunk), *chunk.shape[1:]), dtype)])
        for n, out in zip(names, sess.run(None, {inp.name: chunk})):
            parts[n].append(out[: len(x) - i])
    return {n: np.concatenate(v) for n, v in parts.items()}, used


def probabilities(outputs: np.ndarray, meaning: str) -> np.ndarray:
    """Class probabilities (N, K): the softmax of scores, of −distance for ``distances`` (rbf), or the
    outputs themselves for ``probabilities`` (a network ending in softmax)."""
    if meaning == "probabilities":
        return outputs.astype(np.float64)
    z = -outputs.astype(np.float64) if meaning == "distances" else outputs.astype(np.float64)
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


@dataclass
class Prediction:
    """One sample's top classes: (name, probability) pairs, likeliest first, and its label if known."""

    input: str
    top: list[tuple[str, float]]
    label: str | None = None

    @property
    def correct(self) -> bool | None:
        return None if self.label is None else self.top[0][0] == self.label


def top_classes(inputs: Inputs, outputs: np.ndarray, contract: Contract, k: int) -> list[Prediction]:
    """The top ``k`` classes per sample (the first output must be one vector of classes per sample)."""
    if outputs.ndim != 2:
        raise CnnError(
            f"the model's output is {'x'.join(map(str, outputs.shape[1:]))} per sample, not a vector of classes; "
            "write the outputs with --output instead",
            code="E123",
        )
    probs = probabilities(outputs, contract.output)
    order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    labels = inputs.labels if inputs.labels is not None else np.full(len(probs), -1)
    return [
        Prediction(
            name,
            [(contract.name(int(j)), float(probs[i, j])) for j in order[i]],
            contract.name(int(labels[i])) if labels[i] >= 0 else None,
        )
        for i, name in enumerate(inputs.names)
    ]


def prediction_model(source, weights=None, model=None, load_options=None):
    """(ONNX bytes, contract, warnings) of what ``predict`` runs: an exported ``.onnx`` (its metadata),
    or a ``.net`` file (or compiled ``model``) with the ``weights`` checkpoint of ``cnndsl train``."""
    from pathlib import Path

    from cnndsl.lower.export import load_checkpoint, to_onnx
    from cnndsl.train.contract import export_metadata

    warnings: list = []
    if model is None and Path(str(source)).suffix == ".onnx":
        if weights:
            raise CnnError("--weights is for a .net file; an ONNX model holds its weights", code="E124")
        model_bytes = read_bytes(source, "E040")
        contract = onnx_contract(model_bytes, str(source))
    else:
        if not weights:
            raise CnnError(
                f"{source}: predicting needs trained weights; give --weights W.npz (cnndsl train writes them) "
                "or an exported model.onnx",
                code="E124",
            )
        if model is None:
            from cnndsl.ir.compile import load

            model = load(source, **(load_options or {}))
            warnings += model.warnings
        arrays, recorded = load_checkpoint(weights) if not isinstance(weights, dict) else (weights, {})
        meta = export_metadata(model, recorded, f"--weights {weights if not isinstance(weights, dict) else 'dict'}")
        try:
            model_bytes = to_onnx(model, weights=arrays).SerializeToString()
        except MemoryError:
            raise CnnError(f"not enough memory for the weights of network {model.name}", code="E301") from None
        contract = Contract.from_metadata(meta, tuple(model.graph.input_shape), meta["cnndsl.output"])
    if not contract.recorded:
        warnings.append(unrecorded_warning(str(source), contract))
    return model_bytes, contract, warnings
