"""What every layer kind is made of: argument specifications and the rules.

A layer kind is one class (see the sibling modules) that declares its
positional fields and keywords with their defaults, and implements its rules
side by side: ``shape``, ``params``, ``macs``, ``connections`` and ``window``
(for the receptive field). Arguments arrive canonical: ``3`` is already
``(3, 3)`` for a 2-D input (:func:`coerce`), and ``canonical`` has filled in
what depends on the input (``same`` resolved into ``pads``). Rules are pure:
they read their arguments (a read-only mapping) and return figures.

Rules raise :class:`LayerError` for inputs that do not fit; the elaboration pass
adds the location, the layer's name and the block-call chain. ``{call}`` in a
message is replaced by the source text of the call (``conv 256/5``).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from cnndsl.records import record

from .arith import fmt_shape, prod

REQUIRED = object()


class LayerError(Exception):
    """A rule's complaint; ``arg`` names the argument to point at, if any; ``code`` is the
    diagnostic's (E019 for a layer that does not fit its input)."""

    def __init__(self, message: str, arg: str | None = None, code: str = "E019"):
        super().__init__(message)
        self.message = message
        self.arg = arg
        self.code = code


@record(frozen=True)
class Symbol:
    """A bare word that is not a parameter or table: ``same``, ``center``, ``nearest``."""

    name: str

    def __str__(self) -> str:
        return self.name


@record(frozen=True)
class Table:
    """A named constant from ``table NAME = [...]``."""

    name: str
    rows: tuple


@record(frozen=True)
class ValueRef:
    """``@label`` as an argument: the IR node it names and that node's input shape."""

    name: str
    node: object  # cnndsl.ir.Node
    input_shape: tuple


@record(frozen=True)
class Spec:
    """One argument: its type and default.

    types: ``int`` (``min`` gives the lower bound), ``float``, ``bool``,
    ``spatial`` (an int or a dimension literal, one value per spatial axis),
    ``pad`` (spatial, or ``same``/``valid``), ``enum`` (``choices``), ``table``,
    ``ref`` (``@label``), ``number_or_spatial`` (upsample factors).
    ``same_as`` names the field whose value a left-out argument takes (pooling's
    stride is its size; ``default`` is then None).
    """

    type: str
    default: object = REQUIRED
    min: int | float | None = None
    choices: tuple[str, ...] = ()
    doc: str = ""
    same_as: str | None = None


def describe(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return fmt_shape(value)
    if isinstance(value, Symbol):
        return value.name
    if isinstance(value, Table):
        return f"table {value.name}"
    if isinstance(value, ValueRef):
        return f"@{value.name}"
    return repr(value) if isinstance(value, str) else str(value)


def _type_name(spec: Spec) -> str:
    return {
        "int": "an integer",
        "float": "a number",
        "bool": "true or false",
        "spatial": "an integer or one integer per spatial axis (3x3)",
        "pad": "an integer, one per spatial axis, 'same' or 'valid'",
        "enum": " or ".join(spec.choices),
        "table": "a table name",
        "ref": "a label reference (@name)",
        "number_or_spatial": "an integer or one integer per spatial axis",
    }[spec.type]


def coerce(spec: Spec, name: str, value, rank: int):
    """Check one argument against its spec and bring it to canonical form.

    Raises LayerError (with ``arg=name``) saying what was expected and received."""

    def bad(extra: str = ""):
        if isinstance(value, float) and t in ("int", "spatial", "pad", "number_or_spatial"):
            extra += " (a float: convert it with int(), round(), floor() or ceil())"
        raise LayerError(f"{name} must be {_type_name(spec)}; received {name}={describe(value)}{extra}", name)

    t = spec.type
    if t == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            bad()
        if spec.min is not None and value < spec.min:
            raise LayerError(f"{name} must be at least {spec.min}; received {name}={value}", name)
        return value
    if t == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            bad()
        if spec.min is not None and value < spec.min:
            raise LayerError(f"{name} must be at least {spec.min}; received {name}={value}", name)
        return float(value)
    if t == "bool":
        if not isinstance(value, bool):
            bad()
        return value
    if t == "enum":
        word = value.name if isinstance(value, Symbol) else value if isinstance(value, str) else None
        if word not in spec.choices:
            bad()
        return word
    if t == "table":
        if not isinstance(value, Table):
            bad()
        return value
    if t == "ref":
        if not isinstance(value, ValueRef):
            bad()
        return value
    if t in ("spatial", "number_or_spatial") or (t == "pad" and not isinstance(value, Symbol)):
        if isinstance(value, bool):
            bad()
        if isinstance(value, int):
            values = (value,) * rank
        elif isinstance(value, tuple):
            if len(value) != rank:
                raise LayerError(
                    f"{name} has {len(value)} values but the input has {rank} spatial "
                    f"ax{'is' if rank == 1 else 'es'}; received {name}={describe(value)}",
                    name,
                )
            values = value
        else:
            bad()
        low = spec.min if spec.min is not None else (0 if t == "pad" else 1)
        if any(v < low for v in values):
            raise LayerError(f"{name} must be at least {low}; received {name}={describe(value)}", name)
        return values
    if t == "pad":  # a Symbol
        if value.name not in ("same", "valid"):
            bad()
        return value.name
    raise AssertionError(t)  # pragma: no cover - a spec typo is a bug


class Kind:
    """Base of every layer kind. Subclasses override the rules they need.

    What ``cnndsl import`` needs to know about a kind is said here too:

    - ``chains``: how an imported layer of the kind is written after the one before
      it: ``""`` on a line of its own; ``"layer"`` chained onto a layer's line
      (``conv 64/3 -> bn``) but not onto a combinator's; ``"any"`` also after a
      combinator (activations: ``add { ... } -> relu``).
    - ``stated_defaults``: keywords that an imported network states once, with a
      ``default`` line, when most of its layers of the kind differ from the default
      (``default conv bias=false`` for Caffe's and Darknet's batch-normalised
      convolutions).
    - ``sugar_for``: the combinator that this one is written in place of, when its
      ``import_shortcut`` recognises the branches (``residual { body }`` for
      ``add { shortcut ; body }``).
    - ``onnx_import(reader, group)``: the positional fields and keywords of a layer of
      the kind that a group of ONNX operators computes (``(args, kw)``, or
      ``(args, kw, inputs)`` when the layer reads fewer layers than the group's
      tensors), or None when the group is not the kind's pattern; next to ``lower``,
      whose operators it undoes. The reader (cnndsl/importers/from_onnx.py) tries
      the kinds in the order of ``cnndsl.layers.ONNX_IMPORT`` and hands in its
      helpers: attributes, constants, shapes, padding.
    - ``onnx_chains``: sequences of ONNX operator types, each reading the output of the one
      before, that a foreign exporter writes for one layer of the kind (torch's erf-form GELU:
      Div, Erf, Add, Mul, Mul). The reader groups such a chain so that ``onnx_import`` sees it
      whole; when no kind accepts the group, its operators are read one by one.
    """

    name = ""
    positional: tuple[tuple[str, Spec], ...] = ()
    keywords: dict[str, Spec] = {}
    spatial = False  # needs spatial axes (conv, pooling ...)
    # what other frameworks call this kind: an unknown kind among them suggests this one
    # (``dense`` -> ``fc``); compared without case
    look_alikes: tuple[str, ...] = ()
    doc = ""
    # keywords a diagram shows beside the fields when they differ from the default
    shown_keywords: tuple[str, ...] = ()

    # Combinators (add, concat, mul, residual) take a { body } instead of one input: one
    # branch per statement, or, with derives_shortcut, one chain plus the shortcut that the
    # kind's ``shortcut`` rule derives (residual).
    combinator = False
    derives_shortcut = False
    # Weight initialisation of the export: a conv/fc followed (through init_transparent
    # layers such as bn) by an he_init activation (ReLU-like) gets He, otherwise Xavier.
    he_init = False
    init_transparent = False

    # ``cnndsl import`` (see the class doc)
    chains = ""
    stated_defaults: tuple[str, ...] = ()
    sugar_for = ""
    onnx_chains: tuple[tuple[str, ...], ...] = ()

    # What a network's output of this kind holds, for training: "scores" (the larger, the
    # likelier the class), "distances" (the smaller, the likelier: rbf) or "probabilities"
    # (a softmax: the loss takes the scores before it).
    output = "scores"
    # Normalises with the batch's statistics in training (bn): such networks take SGD's larger
    # default learning rate (cnndsl.train.optim.default_lr).
    batch_statistics = False

    def all_args(self) -> Mapping[str, Spec]:
        """Fields then keywords, read-only (made once per kind: it is asked for at every call)."""
        cached = self.__dict__.get("_all_args")
        if cached is None:
            cached = self.__dict__["_all_args"] = MappingProxyType({**dict(self.positional), **self.keywords})
        return cached

    # ---- the rules; ``a`` holds the canonical arguments (read-only), ``x`` the input shape
    def canonical(self, a: dict, x: tuple) -> dict:
        """The arguments completed once, before any rule runs: defaults that depend on other
        fields or on the input shape, ``same`` resolved into per-axis ``pads``. Returns a new
        dict (never changes ``a``); may raise LayerError. The result is what every other rule
        reads and what the IR keeps. This default fills in ``Spec.same_as``."""
        filled = {n: a[s.same_as] for n, s in self.all_args().items() if s.same_as and a.get(n) is None}
        return {**a, **filled} if filled else a

    def check(self, a: dict, x: tuple) -> None:
        """Validation that needs the input shape, before ``shape``."""

    def shape(self, a: dict, x: tuple) -> tuple:
        return x

    def params(self, a: dict, x: tuple, y: tuple) -> tuple[int, int]:
        """(trainable, non-trainable)."""
        return 0, 0

    def macs(self, a: dict, x: tuple, y: tuple) -> int:
        return 0

    def connections(self, a: dict, x: tuple, y: tuple) -> int:
        return 0

    def window(self, a: dict, x: tuple, y: tuple):
        """Receptive-field step: (input positions one output sees, stride) per axis,
        or None for a pointwise layer."""
        return None

    def warnings(self, a: dict, x: tuple, y: tuple) -> list[tuple[str, str | None]]:
        return []

    def adapters(self, a: dict, shapes: list[tuple]) -> list[tuple]:
        """Combinators: per branch, the layers the pass inserts at its end before ``combine``,
        as ``(name, kind, arguments)`` triples (concat(crop=center) crops to the smallest)."""
        return [() for _ in shapes]

    def index_sources(self, a: dict) -> tuple[int, ...]:
        """IR ids of the pooling layers whose argmax indices this layer reads (unpool)."""
        return ()

    def torch(self, t, node) -> str:
        """The PyTorch expression computing this layer from ``t.x`` (the input variables); the
        layer's module, weights and helper code go through ``t`` (cnndsl/lower/pytorch.py Emit)."""
        raise NotImplementedError(f"{self.name} has no PyTorch code")

    def lower(self, b, node, xs: list[str], y: str) -> None:
        """Emit ONNX operators computing ``y`` from the input tensors ``xs`` (see onnx_lower.Builder)."""
        raise NotImplementedError(f"{self.name} has no ONNX lowering")

    @staticmethod
    def onnx_pads(pads) -> list[int]:
        """Per-axis (begin, end) pairs to ONNX's [begin..., end...]."""
        return [p for p, _ in pads] + [q for _, q in pads]

    def onnx_import(self, reader, group):
        """The arguments of a layer of this kind that ``group`` computes, or None (see the class doc)."""
        return None


def spatial_of(x: tuple) -> tuple:
    return x[1:]


def positions(shape: tuple) -> int:
    return prod(shape[1:])


def full_window(x: tuple):
    """An fc or global pool sees the whole input."""
    sp = x[1:]
    return tuple(sp), tuple(sp)


def fraction(num: int, den: int):
    if type(num) is int and type(den) is int and num % den == 0:
        return num // den  # what int(Fraction(num, den)) is, without importing fractions (start-up)
    from fractions import Fraction

    f = Fraction(num, den)
    return int(f) if f.denominator == 1 else f


# ---- shared by the kinds' ``torch`` rules (the code text of cnndsl export --format torch)
def torch_tuple(values) -> str:
    """Per-axis values as PyTorch takes them: one number when every axis has it (``3``), else a tuple."""
    values = tuple(values)
    return repr(values[0]) if len(set(values)) == 1 else repr(values)


def torch_pads(pads) -> tuple:
    """Per-axis (begin, end) pairs as F.pad takes them: the last axis first."""
    return tuple(v for p, q in reversed(pads) for v in (p, q))


def torch_axes(rank: int) -> tuple:
    """The spatial axes of an (N, C, ...) tensor."""
    return tuple(range(2, 2 + rank))
