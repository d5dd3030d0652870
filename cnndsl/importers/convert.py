"""``cnndsl import``: other formats to readable ``.net`` text.

Three readers (Caffe prototxt, Darknet cfg, ONNX) produce one small
intermediate form (:mod:`cnndsl.importers.form`): a :class:`SourceNet` of
:class:`SourceLayer` records in topological order, each naming the layers it
reads. The writer (:mod:`cnndsl.importers.writer`, :mod:`cnndsl.importers.fold`)
turns it into ``.net`` text: chains become ``a -> b`` lines with a comment
giving the source's names, merges become combinators, combinators of the same
structure calls of one ``block``, runs of identical lines ``* N`` or
``repeat N { ... }``.

    >>> layers = [SourceLayer("c1", "conv", [8, 3]), SourceLayer("r1", "relu", inputs=["c1"])]
    >>> net = SourceNet("tiny", (1, 28, 28), layers)
    >>> print(write_net(net).splitlines()[-2].strip())
    conv 8/3 -> relu                         # c1, r1
"""

from __future__ import annotations

import copy
import re
from pathlib import Path

from cnndsl.errors import CnnError
from cnndsl.importers.fold import write_body
from cnndsl.importers.form import READ_ERROR, RESERVED, SourceChannels, SourceLayer, SourceNet, identifier
from cnndsl.importers.from_caffe import read_caffe
from cnndsl.importers.from_darknet import read_darknet
from cnndsl.importers.from_onnx import read_onnx
from cnndsl.importers.writer import Writer
from cnndsl.ir.compile import compile_network, run_deep
from cnndsl.lang.modules import Loader

# File suffix -> reader (the ONNX reader imports onnx only when it runs).
READERS = {".prototxt": read_caffe, ".pbtxt": read_caffe, ".cfg": read_darknet, ".onnx": read_onnx}

__all__ = ["SourceLayer", "SourceNet", "import_file", "write_net"]


def import_file(path, name: str | None = None, input_shape: tuple | None = None, warnings: list | None = None) -> str:
    """The ``.net`` text of a .prototxt, .cfg or .onnx file; ``name`` names the network;
    ``input_shape`` (CxHxW, ``--input``) is the input of a Caffe file whose data layer does not
    say it; ``warnings`` receives the reader's warnings (fields passed over)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in READERS:
        raise CnnError(
            f"cannot import {path}: expected a .prototxt (Caffe), .cfg (Darknet) or .onnx file; "
            f"received {suffix or 'no extension'}",
            code=READ_ERROR,
        )
    if input_shape is not None and READERS[suffix] is not read_caffe:
        raise CnnError("--input is for Caffe files, whose data layers may not give the input's size", code=READ_ERROR)
    net = read_caffe(path, input_shape) if input_shape is not None else READERS[suffix](path)
    if warnings is not None:
        warnings.extend(net.warnings)
    resolve_channels(net)
    if name is not None:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) or name in RESERVED:
            raise CnnError(f"--name {name}: expected a name like resnet50 (letters, digits, _)", code=READ_ERROR)
        net.name = name
    net.name = identifier(net.name, set())
    return write_net(net, source=str(path))


def resolve_channels(net: SourceNet) -> None:
    """Fields that are shares of a layer's input channels (:class:`SourceChannels`) made numbers:
    the network up to that layer is written and compiled to learn the channel count."""
    for k, layer in enumerate(net.layers):
        if not any(isinstance(a, SourceChannels) for a in layer.args):
            continue
        source = layer.inputs[0] if layer.inputs else net.layers[k - 1].name if k else "input"
        if source == "input":
            channels = net.input[0]
        else:
            prefix = SourceNet(net.name, net.input, copy.deepcopy(net.layers[:k]), [source])
            text = write_net(prefix)
            model = run_deep(lambda text=text: compile_network(Loader().load_text(text, "<prefix>"), None, {}))
            channels = model.outputs[0][1][0]
        layer.args = [channels * a.num // a.den if isinstance(a, SourceChannels) else a for a in layer.args]


def write_net(net: SourceNet, source: str = "") -> str:
    """The ``.net`` text of an intermediate network (see the module doc)."""
    return write_body(Writer(net, source))
