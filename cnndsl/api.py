"""The Python API for scripts and notebooks (docs/api.md): :func:`load` returns a :class:`Model`
that prints as one line, renders as the layer table (HTML) or the diagram (SVG) in a notebook, and
exports, draws (``model.graph(path)``), and — with :func:`train` and :func:`predict` — does what the command line does.
"""

from __future__ import annotations

import os
import types

import cnndsl.train as _train_package
from cnndsl.ir.compile import load as _load
from cnndsl.ir.graph import Graph as _Graph
from cnndsl.ir.model import Model as _Model

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up)
if TYPE_CHECKING:
    from pathlib import Path


class _DrawableGraph(_Graph):
    """The compiled IR (:class:`cnndsl.ir.graph.Graph`, every field as it is) that, called as
    ``model.graph(path, depth=None)``, draws the diagram as ``cnndsl graph`` does (:meth:`Model.draw`)."""

    def __call__(self, path, depth: int | None = None) -> Path:
        return Model.draw(self, path, depth)  # draw() reads only .graph of its model: this graph's

    @property
    def graph(self):
        return self


class Model(_Model):
    """A compiled network (:class:`cnndsl.ir.model.Model`) with the API's methods."""

    @classmethod
    def of(cls, model: _Model) -> Model:
        """The API's view of a compiled model (the same figures, nothing recomputed)."""
        api = cls.__new__(cls)
        api.__dict__.update(model.__dict__)
        drawable = object.__new__(_DrawableGraph)
        drawable.__dict__.update(model.graph.__dict__)  # a frozen dataclass: the fields copied, not set
        api.__dict__["graph"] = drawable
        return api

    def table(self, depth: int | None = None) -> Table:
        """The layer table (``print`` it, or show it in a notebook); ``depth=N`` shows each block
        instance nested deeper than N calls as one row, as ``cnndsl graph --depth`` draws one box."""
        return Table(self, depth)

    def _repr_html_(self) -> str:
        return self.table()._repr_html_()

    def _repr_svg_(self) -> str:
        from cnndsl.tools.diagram import diagram, render_diagram

        return render_diagram(diagram(self), ".svg").decode()

    def export(self, path, *, weights=None, **options) -> Path:
        """Write the ONNX model to ``path`` (atomically) and return the path. ``weights``: a
        checkpoint path (its class names and preprocessing go into the metadata, as with ``cnndsl
        export --weights``) or a dict of arrays; ``options``: ``opset``, ``seed``, ``batch``,
        ``dtype``, ``fold`` (batch norm), as :func:`cnndsl.lower.export.to_onnx` takes them."""
        from cnndsl.lower.export import load_checkpoint, to_onnx, write_model
        from cnndsl.train.contract import export_metadata

        if weights is None or isinstance(weights, dict):
            arrays, recorded = weights, {}
        else:
            arrays, recorded = load_checkpoint(weights)
        metadata = export_metadata(self, recorded, f"--weights {weights}")
        from pathlib import Path  # imported when used: info and check start without it

        path = Path(path)
        write_model(to_onnx(self, weights=arrays, metadata=metadata, **options), path)
        return path

    def to_torch(self):
        """The generated PyTorch module (``cnndsl export --format torch``), its weights at their
        initial values; torch is imported here (cnndsl/lower/pytorch.py)."""
        from cnndsl.lower.pytorch import to_torch

        return to_torch(self)

    def draw(self, path, depth: int | None = None) -> Path:
        """``cnndsl graph``: write the diagram to ``path`` (``.svg``, ``.png`` or ``.dot``, by the
        extension) and return it. ``model.graph(path)`` does the same: ``model.graph`` is the
        compiled IR (:class:`cnndsl.ir.graph.Graph`), and calling it draws it."""
        from pathlib import Path  # imported when used: info and check start without it

        from cnndsl.errors import CnnError
        from cnndsl.files import write_atomic
        from cnndsl.tools.diagram import diagram, render_diagram

        path = Path(path)
        if path.suffix.lower() not in (".svg", ".png", ".dot"):
            raise CnnError(f"{path}: choose a .svg, .png or .dot file", code="E083")
        data = render_diagram(diagram(self, depth), path.suffix.lower())
        write_atomic(path, lambda f: f.write(data))
        return path


class Table:
    """The layer table: ``str()`` is ``cnndsl info``'s text, ``_repr_html_`` a notebook's table."""

    def __init__(self, model: Model, depth: int | None = None):
        self.model, self.depth = model, depth

    def rows(self) -> list[tuple[str, ...]]:
        """(layer, kind, output, params, MACs, RF) as the table prints them."""
        from cnndsl.tools.table import COLUMNS, DEFAULT_COLUMNS

        return [(r.name, *(COLUMNS[k].cell(r, None) for k in DEFAULT_COLUMNS)) for r in self.model.rows(self.depth)]

    def __str__(self) -> str:
        from cnndsl.tools.table import format_plain

        return format_plain(self.model, depth=self.depth)

    __repr__ = __str__

    def _repr_html_(self) -> str:
        import html  # notebooks only

        from cnndsl.tools.table import COLUMNS, DEFAULT_COLUMNS, header_lines, totals_lines

        esc = html.escape
        right = ' style="text-align:right"'
        headers = ["layer", *(COLUMNS[k].header for k in DEFAULT_COLUMNS)]
        aligned = [False, *(COLUMNS[k].right for k in DEFAULT_COLUMNS)]
        head = "".join(f"<th{right if r else ''}>{esc(h)}</th>" for h, r in zip(headers, aligned))
        body = "".join(
            "<tr>" + "".join(f"<td{right if r else ''}>{esc(c)}</td>" for c, r in zip(row, aligned)) + "</tr>"
            for row in self.rows()
        )
        totals = ""
        for line in totals_lines(self.model, width=200):
            key, value, *note = [t.strip() for t, _ in line] + [""]
            totals += f"<tr><th>{esc(key)}</th><td{right}>{esc(value)}</td><td>{esc(note[0])}</td></tr>"
        title, *convention = ["".join(t for t, _ in line) for line in header_lines(self.model, depth=self.depth)]
        return (
            f'<div class="cnndsl-model"><p><b>{esc(title)}</b></p>'
            f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
            f"<table>{totals}</table><p><small>{esc(' '.join(convention))}</small></p></div>"
        )


def load(source, network: str | None = None, defines: dict | None = None, input=None, max_layers=None) -> Model:
    """Compile one network of a .net file or text (:func:`cnndsl.ir.compile.load`) as a :class:`Model`."""
    return Model.of(_load(source, network, defines, input, max_layers))


class Trained:
    """What :func:`train` returns: the epochs' figures, the checkpoint files and the best epoch."""

    def __init__(self, result, last, best, data):
        self.epochs, self.best_epoch, self.provider = result.epochs, result.best, result.provider
        self.last, self.best, self.data = last, best, data

    @property
    def held_out_accuracy(self) -> float | None:
        """The last epoch's held-out accuracy (a fraction), as ``cnndsl train`` prints it."""
        return self.epochs[-1].held_out_accuracy if self.epochs else None

    def __repr__(self) -> str:
        files = " and ".join(str(p) for p in (self.last, self.best) if p is not None)
        acc = self.held_out_accuracy
        return (
            f"<Trained {len(self.epochs)} epochs on {self.provider}, held-out accuracy {acc:.2%}: {files}>"
            if (acc is not None)
            else f"<Trained {len(self.epochs)} epochs on {self.provider}: {files}>"
        )


def train(
    model,
    data: str,
    *,
    epochs=10,
    batch=64,
    lr=0.001,
    momentum=0.9,
    weight_decay=0.0,
    schedule="constant",
    loss=None,
    held_out=0.2,
    provider="auto",
    out=None,
    keep="both",
    resume=None,
    seed=0,
    report=None,
    masks=None,
    ignore_index=None,
) -> Trained:
    """``cnndsl train``: ``model`` a :class:`Model` or a ``.net`` path, ``data`` a source as ``--data``
    takes it; ``out`` (default ``NETWORK.npz``) and ``keep`` (``best``, ``last``, ``both``: the last in
    ``out`` and the best in ``OUT.best.npz``) as on the command line; ``report(epoch)`` after each epoch.
    Per-pixel labels (a network whose output is ``KxHxW``): ``masks`` and ``ignore_index`` as
    ``--masks`` and ``--ignore-index``."""
    from cnndsl.errors import CnnError
    from cnndsl.lower.export import load_weights
    from cnndsl.train.contract import Contract, checkpoint_metadata
    from cnndsl.train.data import load_data, split
    from cnndsl.train.step import default_loss, output_meaning
    from cnndsl.train.trainer import train as run_training

    if not isinstance(model, _Model):
        model = load(model)
    if keep not in ("best", "last", "both"):
        raise CnnError(f"keep={keep!r}: choose best, last or both", code="E084")
    if keep == "best" and not held_out:
        raise CnnError("--keep best needs held-out data to tell the best epoch (--held-out above 0)", code="E084")
    from pathlib import Path

    out = Path(out or f"{model.name}.npz")
    last = None if keep == "best" else out
    best = (out if keep == "best" else out.with_name(out.stem + ".best.npz")) if keep != "last" and held_out else None
    shape = model.graph.nodes[model.graph.outputs[0][1]].shape
    loaded = load_data(
        data, model.graph.input_shape, shape[0], label_shape=tuple(shape[1:]) or None, masks=masks,
        ignore_index=ignore_index,
    )  # fmt: skip
    part, held = split(loaded, held_out, seed) if held_out else (loaded, None)
    contract = Contract(tuple(model.graph.input_shape), loaded.preprocessing, loaded.names, output_meaning(model))
    result = run_training(
        model,
        part,
        held,
        epochs=epochs,
        batch=batch,
        lr=lr,
        momentum=momentum,
        weight_decay=weight_decay,
        provider=provider,
        seed=seed,
        out=last,
        best=best,
        metadata=checkpoint_metadata(contract),
        resume=load_weights(resume) if resume else None,
        report=report,
        loss=loss or default_loss(model),
        schedule=schedule,
        ignore_index=ignore_index,
    )
    return Trained(result, last, best if result.best is not None else None, loaded.description)


class _CallablePackage(types.ModuleType):
    """``cnndsl.train`` is the training stage's package (``cnndsl.train.data`` ...) and, called,
    :func:`train`: a function of that name on ``cnndsl`` would be replaced by the package as soon
    as one of its modules is imported."""

    def __call__(self, *args, **kwargs):
        return train(*args, **kwargs)


_train_package.__class__ = _CallablePackage


class Predictions(list):
    """What :func:`predict` returns: a :class:`~cnndsl.train.predict.Prediction` per sample (its
    ``top`` (class, probability) pairs and ``label``), the raw ``outputs`` by name, and ``accuracy``."""

    def __init__(self, items, outputs, contract):
        super().__init__(items)
        self.outputs, self.contract = outputs, contract

    @property
    def accuracy(self) -> float | None:
        """Top-1 accuracy over the labelled samples (class folders, an .npz's y); None without labels."""
        labelled = [p for p in self if p.label is not None]
        return sum(p.correct for p in labelled) / len(labelled) if labelled else None


def predict(model, inputs, *, weights=None, top=3, provider="auto", batch=64) -> Predictions:
    """``cnndsl predict``: ``model`` an exported ``.onnx`` path, or a :class:`Model` or ``.net`` path
    with ``weights`` (a checkpoint of ``cnndsl train``); ``inputs`` image files, folders, ``.npy``/``.npz``
    paths (one or a list), or a NumPy array of samples. Inputs are prepared as ``train`` prepared its
    data (the model's recorded preprocessing); warnings go to ``warnings.warn``."""
    import warnings as python_warnings

    import numpy as np

    from cnndsl.train.data import prepare
    from cnndsl.train.predict import Inputs, prediction_model, read_inputs, run_model, top_classes

    compiled = model if isinstance(model, _Model) else None
    model_bytes, contract, warnings = prediction_model(compiled.graph.file if compiled else model, weights, compiled)
    for w in warnings:
        python_warnings.warn(w.format(show_code=True), stacklevel=2)
    if isinstance(inputs, np.ndarray):
        from cnndsl.errors import CnnError

        def fail(code, message):
            return CnnError(f"inputs: {message}", code=code)

        x, _ = prepare(inputs, contract.shape, contract.preprocessing, fail, "inputs")
        read = Inputs(x, [f"[{i}]" for i in range(len(x))])
    else:
        read = read_inputs([inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs), contract)
    outputs, _ = run_model(model_bytes, read.x, provider, batch)
    first = next(iter(outputs.values()))
    items = top_classes(read, first, contract, top) if first.ndim == 2 else []
    return Predictions(items, outputs, contract)
