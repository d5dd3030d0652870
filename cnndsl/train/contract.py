"""What a trained model expects of its inputs and what its outputs mean, carried from ``train`` to
``export``, ``run`` and ``predict`` (docs/deploy.md).

``train`` records it in the checkpoint (the ``.npz`` key ``cnndsl.metadata``, a JSON object of the
keys below), ``export --weights`` copies it into the ONNX model's ``metadata_props``, and ``run`` and
``predict`` read it back and prepare their inputs with ``train``'s own functions
(:func:`cnndsl.train.data.prepare`, :func:`~cnndsl.train.data.read_image`).

>>> c = Contract((1, 32, 32), Preprocessing(16, "fit", 3), ("0", "1"), "distances")
>>> c.to_metadata()["cnndsl.input.scale"], Contract.from_metadata(c.to_metadata(), (1, 32, 32), "scores") == c
('16', True)
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from cnndsl.errors import CnnError
from cnndsl.lower.export import METADATA_KEY
from cnndsl.train.data import Preprocessing

# The documented keys (docs/deploy.md), each a string in ONNX metadata_props.
KEYS = {
    "cnndsl.classes": "the class names as a JSON list, in output order",
    "cnndsl.output": "what the (first) output holds: scores, distances (rbf: the nearest is the class), probabilities",
    "cnndsl.input.layout": "the input's axes: NCHW (N the batch; NC for a vector, NCW, NCDHW)",
    "cnndsl.input.shape": "the input without the batch, CxHxW",
    "cnndsl.input.channels": "how an image becomes the channels: L (luminance, ITU-R BT.601) or RGB",
    "cnndsl.input.scale": "integer pixels are divided by this (255; 16 for the digits); floats are used as they are",
    "cnndsl.input.resize": "fit (pad centred, or scale down keeping the aspect ratio) or stretch (bilinear to HxW)",
    "cnndsl.input.upscale": "a whole factor the samples are enlarged by before fitting (1: none)",
}
UNRECORDED = " (the default: the model records no preprocessing)"
OUTPUTS = ("scores", "distances", "probabilities")
RESIZES = ("fit", "stretch")
PREPROCESSING_KEYS = ("cnndsl.input.scale", "cnndsl.input.resize", "cnndsl.input.upscale")


@dataclass(frozen=True)
class Contract:
    """A model's input shape, preprocessing, class names and output meaning."""

    shape: tuple[int, ...]
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    classes: tuple[str, ...] = ()
    output: str = "scores"
    recorded: bool = field(default=True, compare=False)  # False: the model carried no preprocessing

    def to_metadata(self) -> dict[str, str]:
        p = self.preprocessing
        return {
            "cnndsl.classes": json.dumps(list(self.classes)),
            "cnndsl.output": self.output,
            "cnndsl.input.layout": layout(self.shape),
            "cnndsl.input.shape": "x".join(map(str, self.shape)),
            "cnndsl.input.channels": "RGB" if len(self.shape) == 3 and self.shape[0] == 3 else "L",
            "cnndsl.input.scale": str(p.scale),
            "cnndsl.input.resize": p.resize,
            "cnndsl.input.upscale": str(p.upscale),
        }

    @classmethod
    def from_metadata(cls, props: dict, shape: tuple[int, ...], output: str, where: str = "the model") -> Contract:
        """The contract a model's metadata records; the defaults (``recorded`` False) where it records
        no preprocessing. ``shape`` and ``output`` are the model's own, used when the keys are absent;
        a recorded shape that differs from the model's is an error (E120), as is a damaged value."""

        def bad(key, why):
            return CnnError(f"{where}: metadata {key} = {props[key]!r}: {why}", code="E120")

        output = props.get("cnndsl.output", output)
        if output not in OUTPUTS:
            raise bad("cnndsl.output", f"expected one of {', '.join(OUTPUTS)}")
        classes: tuple[str, ...] = ()
        if "cnndsl.classes" in props:
            try:
                names = json.loads(props["cnndsl.classes"])
            except ValueError:
                names = None
            if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                raise bad("cnndsl.classes", "expected a JSON list of strings")
            classes = tuple(names)
        if "cnndsl.input.shape" in props and props["cnndsl.input.shape"] != "x".join(map(str, shape)):
            raise bad("cnndsl.input.shape", f"the model's input is {'x'.join(map(str, shape))}")
        if not any(k in props for k in PREPROCESSING_KEYS):
            return cls(tuple(shape), Preprocessing(), classes, output, recorded=False)
        try:
            scale = int(props.get("cnndsl.input.scale", "255"))
            upscale = int(props.get("cnndsl.input.upscale", "1"))
        except ValueError:
            key = next(k for k in ("cnndsl.input.scale", "cnndsl.input.upscale") if not props.get(k, "1").isdigit())
            raise bad(key, "expected a whole number") from None
        for key, value in (("cnndsl.input.scale", scale), ("cnndsl.input.upscale", upscale)):
            if not 1 <= value <= 65535:
                raise bad(key, "expected a whole number from 1 to 65535")
        resize = props.get("cnndsl.input.resize", "fit")
        if resize not in RESIZES:
            raise bad("cnndsl.input.resize", f"expected one of {', '.join(RESIZES)}")
        return cls(tuple(shape), Preprocessing(scale, resize, upscale), classes, output)

    def describe(self) -> str:
        """The preprocessing in words, for the command line."""
        p = self.preprocessing
        words = [f"integers / {p.scale}, floats as they are"]
        if p.upscale > 1:
            words.append(f"upscaled {p.upscale}x")
        words.append("resized to the input" if p.resize == "stretch" else "fitted (padded centred or scaled down)")
        return ", ".join(words) + ("" if self.recorded else UNRECORDED)

    def name(self, k: int) -> str:
        """The name of class ``k`` (its index where the model names fewer classes)."""
        return self.classes[k] if k < len(self.classes) else str(k)


def layout(shape: tuple[int, ...]) -> str:
    """The axes of a batch of ``shape``: ``NCHW`` for CxHxW, ``NC`` for a vector."""
    return "N" + {1: "C", 2: "CW", 3: "CHW", 4: "CDHW"}.get(len(shape), "C" + "S" * (len(shape) - 1))


def checkpoint_metadata(contract: Contract) -> dict:
    """The entry ``train`` adds to its checkpoint: ``{METADATA_KEY: JSON of the metadata}``."""
    import numpy as np

    return {METADATA_KEY: np.array(json.dumps(contract.to_metadata(), sort_keys=True))}


def export_metadata(model, recorded: dict, where: str = "--weights") -> dict[str, str]:
    """The ``metadata_props`` ``export`` adds: a checkpoint's recorded contract (checked against the
    network), else what the network itself says (its output's meaning, the input's layout and shape)."""
    from cnndsl.train.step import output_meaning

    shape = tuple(model.graph.input_shape)
    contract = Contract.from_metadata(recorded, shape, output_meaning(model), where)
    meta = contract.to_metadata()
    if not recorded:
        return {k: meta[k] for k in ("cnndsl.output", "cnndsl.input.layout", "cnndsl.input.shape")}
    return meta
