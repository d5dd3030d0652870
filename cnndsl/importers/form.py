"""The intermediate form of ``cnndsl import``: what the readers produce and the writer reads.

A :class:`SourceNet` holds :class:`SourceLayer` records in topological order, each
naming the layers it reads, with the kinds, fields and keywords of the language.
The readers (``from_caffe``, ``from_darknet``, ``from_onnx``) import this module and
nothing else of the importers; so does the writer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from cnndsl.errors import CnnError, Span, remember_source
from cnndsl.files import read_bytes
from cnndsl.lang.modules import MAX_FILE_BYTES

# Words of the language that a layer, block or network cannot be named.
RESERVED = {"network", "block", "import", "table", "default", "input", "output", "repeat", "in", "true", "false"}
READ_ERROR = "E240"


@dataclass
class SourceLayer:
    """One layer of the intermediate form.

    ``kind`` is a layer kind of the language; ``args`` its positional fields and
    ``kw`` its keywords, as values (ints, floats, bools, words, tuples for
    dimension literals); ``inputs`` the names of the layers read (``"input"`` is
    the network input; empty means the layer before)."""

    name: str
    kind: str
    args: list = field(default_factory=list)
    kw: dict = field(default_factory=dict)
    inputs: list = field(default_factory=list)
    span: Span | None = None


@dataclass(frozen=True)
class SourceRef:
    """A keyword value naming another layer: written ``@label`` (``unpool of=@pool1``)."""

    name: str


@dataclass(frozen=True)
class SourceChannels:
    """A field that is a share of the input's channel count, known once shapes are: ``num·C/den``
    (Caffe's last Slice part ends at C; without slice_point the parts are equal). The
    importer resolves it before writing (:func:`cnndsl.importers.convert.resolve_channels`)."""

    num: int
    den: int = 1


@dataclass(frozen=True)
class SourceTable:
    """A connection table (``table NAME = [[0,1,2], ...]``), named by a keyword ``table=NAME``."""

    name: str
    rows: list


@dataclass
class SourceNet:
    name: str
    input: tuple
    layers: list
    outputs: list = field(default_factory=list)  # layer names; empty: the last layer
    notes: list = field(default_factory=list)  # comment lines for the file header
    tables: list = field(default_factory=list)
    output_names: dict = field(default_factory=dict)  # layer -> the source's name for that output
    warnings: list = field(default_factory=list)  # Diagnostics: what the reader passed over


def read_text(path: Path) -> str:
    """The UTF-8 text of a source file (E240 when it cannot be read or is over 16 MiB, the limit of
    ``.net`` files), remembered for diagnostics."""
    data = read_bytes(path, READ_ERROR, limit=(MAX_FILE_BYTES, READ_ERROR))
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise CnnError(f"cannot read {path}: not UTF-8 text (byte {err.start})", code=READ_ERROR) from None
    remember_source(str(path), text)
    return text


def identifier(name: str, taken: set) -> str:
    """A fresh .net name for a source name: ``conv1/7x7_s2`` -> ``conv1_7x7_s2``.

    >>> identifier("conv1/7x7_s2", set()), identifier("3a", set()), identifier("input", set())
    ('conv1_7x7_s2', 'l3a', 'input_')
    """
    base = re.sub(r"[^A-Za-z0-9_]", "_", name).strip("_") or "layer"
    base = re.sub(r"_+", "_", base)
    if base[0].isdigit():
        base = "l" + base
    if base in RESERVED:
        base += "_"
    out, k = base, 1
    while out in taken:
        out = f"{base}_{k}"
        k += 1
    taken.add(out)
    return out
