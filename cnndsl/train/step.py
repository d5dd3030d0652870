"""The training-step graph: forward (training form), loss, backward, update, in one ONNX model.

    >>> from cnndsl import load
    >>> m = train_model(load("network n { input 1x8x8\\n conv 4/3 -> bn -> relu -> fc 3 }"), momentum=0.9)
    >>> [i.name for i in m.graph.input][:5]
    ['x', 'y', 'lr', 'conv.weight', 'conv.weight.momentum']

Inputs: ``x`` (a batch), ``y`` (class labels, int64; or targets for ``mse``),
``lr`` (a scalar, default the ``lr`` given), every trainable parameter under its
inference name (``<layer>.weight``, ``.bias``), every optimizer buffer
(``<param>.momentum``; adam's ``.exp_avg``, ``.exp_avg_sq`` and ``train:step``) and
every BN running statistic (``<bn>.running_mean``, ``.running_var``); all but ``x``
and ``y`` have initializers holding their current values, so the file runs as it
is. Outputs: ``loss``, ``logits``, then ``<name>.new`` for every parameter,
optimizer buffer and running statistic, and
with ``gradients=True`` ``<param>.grad`` (and ``input.grad`` with ``wrt_input``).

Losses: ``cross_entropy`` (softmax over the class scores; an rbf output's scores
are its negated distances), ``mse``, and ``map``, LeCun et al. 1998's criterion for
rbf outputs (eq. 9): ``y_D + log(e^−j + Σ_i e^−y_i)`` with ``y_i`` the distances
and ``D`` the label — cross-entropy over the scores ``−y_i`` and one more, constant
score ``−j`` (``MAP_J``); the default for networks ending in ``rbf``.

Conventions (PyTorch's): cross-entropy averaged over the batch and every spatial
position, MSE averaged over every element; the optimizers of
:mod:`cnndsl.train.optim` (SGD, Adam, AdamW as torch.optim defines them); BN
normalises with the batch's biased variance and updates its running variance with
the unbiased one.
"""

from __future__ import annotations

import numpy as np

from cnndsl.errors import CnnError
from cnndsl.layers import CATALOGUE
from cnndsl.lower.builder import DEFAULT_OPSET, assemble, lower_nodes
from cnndsl.lower.export import light_copy
from cnndsl.train.adjoints import differentiate
from cnndsl.train.optim import STEP, Optimizer, emit_update

LOSSES = ("cross_entropy", "mse", "map")
MAP_J = 1.0  # the constant j of LeCun et al. 1998's MAP criterion (eq. 9); the paper leaves its value open
SHAPE_BATCH = 2  # the batch size shape inference sees; rules only read non-batch sizes


def train_model(
    model,
    loss: str | None = None,
    lr: float = 0.01,
    momentum: float = 0.0,
    weight_decay: float = 0.0,
    seed: int = 0,
    weights: dict | None = None,
    dtype: str = "float32",
    opset: int = DEFAULT_OPSET,
    gradients: bool = False,
    wrt_input: bool = False,
    check: bool = True,
    **options,
):
    """The ModelProto of one training step of a compiled network (see module doc; ``options``:
    those of :func:`train_graph` after ``check``)."""
    return train_graph(
        model, loss, lr, momentum, weight_decay, seed, weights, dtype, opset, gradients, wrt_input, check, **options
    )[0]


def output_meaning(model) -> str:
    """What the network's (first) output holds: ``scores``, ``distances`` (rbf) or
    ``probabilities`` (softmax), as its layer kind says (``Kind.output``)."""
    kind = model.graph.nodes[model.graph.outputs[0][1]].kind
    return CATALOGUE[kind].output if kind in CATALOGUE else "scores"  # the input itself: scores


def batch_normalised(model) -> bool:
    """Whether a layer of the network normalises with batch statistics in training (bn)."""
    return any(CATALOGUE[n.kind].batch_statistics for n in model.graph.nodes if n.kind in CATALOGUE)


def default_loss(model) -> str:
    """``map`` for a network ending in distances (rbf units: LeNet-5's own criterion), ``cross_entropy`` otherwise."""
    return "map" if output_meaning(model) == "distances" else "cross_entropy"


def train_graph(
    model,
    loss=None,
    lr=0.01,
    momentum=0.0,
    weight_decay=0.0,
    seed=0,
    weights=None,
    dtype="float32",
    opset=DEFAULT_OPSET,
    gradients=False,
    wrt_input=False,
    check=True,
    optimizer: Optimizer | None = None,
    label_smoothing: float = 0.0,
    freeze=(),
    reset=(),
    partial: bool = False,
    tuning: dict | None = None,
    ignore_index: int | None = None,
):
    """(ModelProto, {weight name: trainable}) — the names are those of the inference model.

    ``optimizer`` (cnndsl.train.optim) replaces ``momentum`` and ``weight_decay`` (SGD's);
    ``label_smoothing`` ε mixes the cross-entropy's target with the uniform distribution,
    (1 − ε)·onehot + ε/K, as PyTorch's. Fine-tuning: ``freeze`` (name prefixes) selects
    trainable parameters that get no gradient and no update (they stay initializers, like
    fixed tensors); ``reset`` (prefixes) parameters and buffers initialised from the seed
    whatever ``weights`` holds; with ``partial``, ``weights`` may hold a subset (the rest from
    the seed). ``tuning``, a dict, receives ``initialised`` and ``frozen`` (the names).
    ``ignore_index`` K (cross_entropy, map): labels equal to K add nothing to the loss or the
    gradient, and the loss is the mean over the other labels (PyTorch's ``ignore_index`` with
    ``reduction="mean"``; a batch without one is a loss of 0 and no gradient)."""
    import onnx
    from onnx import helper, numpy_helper

    loss = default_loss(model) if loss is None else loss
    if loss not in LOSSES:
        raise CnnError(f"--loss {loss}: choose {' or '.join(LOSSES)}", code="E085")
    if dtype not in ("float32", "float64"):
        raise CnnError(f"--dtype {dtype}: training graphs are float32 or float64", code="E084")
    if lr < 0 or momentum < 0 or weight_decay < 0:
        raise CnnError("--lr, --momentum and --weight-decay must not be negative", code="E084")
    if optimizer is None:
        optimizer = Optimizer("sgd", momentum=momentum, weight_decay=weight_decay)
    if not 0 <= label_smoothing < 1:
        raise CnnError(f"--label-smoothing must be in [0, 1); received {label_smoothing}", code="E084")
    if label_smoothing and loss != "cross_entropy":
        raise CnnError(f"--label-smoothing is for the cross_entropy loss, not {loss}", code="E085")
    if ignore_index is not None and loss == "mse":
        raise CnnError("--ignore-index is for class labels (cross_entropy, map), not mse", code="E085")
    graph = model.graph
    if reset and weights is not None:
        weights = {k: v for k, v in weights.items() if not k.startswith(tuple(reset))}
    b = lower_nodes(graph, opset, seed, weights, np.dtype(dtype), training=True, partial=partial or bool(reset))
    for option, prefixes, pool in (
        ("--freeze", freeze, [n for n, t in b.params.items() if t]),
        ("--reset", reset, b.params),
    ):
        for prefix in prefixes:
            if not any(name.startswith(prefix) for name in pool):
                layers = sorted({name.rsplit(".", 1)[0] for name in pool})
                raise CnnError(
                    f"{option} {prefix}: no {'trainable ' if option == '--freeze' else ''}parameter of {model.name} "
                    f"starts with it; its layers with parameters: {', '.join(layers) or 'none'}",
                    code="E084",
                )
    frozen = {name for name, t in b.params.items() if t and name.startswith(tuple(freeze))} if freeze else set()
    if tuning is not None:
        tuning["initialised"] = list(b.initialised)
        tuning["frozen"] = [name for name in b.params if name in frozen]
    elem = b.elem
    out_name, out_id = graph.outputs[0]
    out_node = graph.nodes[out_id]
    b.layer = "loss"
    prediction = b.tensor(out_id)
    meaning = output_meaning(model)
    if loss == "map" and meaning != "distances":
        raise CnnError(
            f"--loss map is LeNet-5's criterion for an rbf output; the output of {model.name} is "
            f"{out_node.kind} (use cross_entropy)",
            code="E085",
        )
    if loss in ("cross_entropy", "map"):
        if meaning == "probabilities":  # the loss takes the scores before the softmax
            prediction = b.tensor(out_node.inputs[0])
        elif meaning == "distances":  # the nearest centre is the most likely class
            prediction = b.op("Neg", [prediction])
    logit_shape = graph.nodes[out_id].shape
    forward = list(b.nodes)
    shapes = _static_shapes(b, graph)

    # ---- the loss and its gradient with respect to the prediction
    if loss in ("cross_entropy", "map"):
        labels = helper.make_tensor_value_info(
            "y", helper.np_dtype_to_tensor_dtype(np.dtype(np.int64)), ["N", *logit_shape[1:]]
        )
        classes = logit_shape[0]
        scores = prediction
        if loss == "map":  # one more score, the constant −j, that no label names
            rows = b.op("Shape", [prediction], end=1)
            column = b.op(
                "ConstantOfShape",
                [b.op("Concat", [rows, b.const(np.array([1], np.int64))], axis=0)],
                value=numpy_helper.from_array(np.array([-MAP_J], b.dtype)),
            )
            scores = b.op("Concat", [prediction, column], axis=1)
        logp = b.op("LogSoftmax", [scores], axis=1)
        # the target distribution: one-hot, or (1 − ε)·onehot + ε/K with label smoothing
        off = label_smoothing / classes
        target = "y"
        if ignore_index is not None:  # the labelled positions only: a mask (N, 1, ...) on target and residual
            keep = b.op("Not", [b.op("Equal", ["y", b.const(np.array(ignore_index, np.int64))])])
            target = b.op("Where", [keep, "y", b.const(np.array(0, np.int64))])  # any class: masked below
        onehot = b.op(
            "OneHot",
            [
                target,
                b.const(np.array(classes + (loss == "map"), np.int64)),
                b.const(np.array([off, 1.0 - label_smoothing + off])),
            ],
            axis=1,
        )
        probs = b.op("Exp", [logp])
        if ignore_index is None:
            count = b.op("Cast", [b.op("Size", ["y"])], to=elem)
        else:
            mask = b.op("Unsqueeze", [b.op("Cast", [keep], to=elem), b.const(np.array([1], np.int64))])
            onehot = b.op("Mul", [onehot, mask])
            probs = b.op("Mul", [probs, mask])
            count = b.op("Max", [b.op("ReduceSum", [mask], keepdims=0), b.scalar(1.0)])
        b.op("Div", [b.op("Neg", [b.op("ReduceSum", [b.op("Mul", [logp, onehot])], keepdims=0)]), count], out="loss")
        residual = b.op("Sub", [probs, onehot])
        if loss == "map":
            residual = b.op("Slice", [residual] + [b.const(np.array([v], np.int64)) for v in (0, classes, 1)])
        seed_grad = b.op("Div", [residual, count])
    else:
        labels = helper.make_tensor_value_info("y", elem, ["N", *logit_shape])
        diff = b.op("Sub", [prediction, "y"])
        b.op("ReduceMean", [b.op("Mul", [diff, diff])], out="loss", keepdims=0)
        count = b.op("Cast", [b.op("Size", ["y"])], to=elem)
        seed_grad = b.op("Div", [b.op("Mul", [diff, b.scalar(2.0)]), count])
    b.op("Identity", [prediction], out="logits")

    # ---- backward
    trainable = [name for name, t in b.params.items() if t and name not in frozen]
    wrt = trainable + (["input"] if wrt_input else [])
    grads = differentiate(b, shapes, {prediction: seed_grad}, wrt, forward)

    # ---- the optimizer's update (cnndsl.train.optim)
    inits = dict(b.initializers)
    inputs = [
        helper.make_tensor_value_info("x", elem, ["N", *graph.input_shape]),
        labels,
        helper.make_tensor_value_info("lr", elem, []),
    ]
    b.initializers.append(("lr", np.array(lr, b.dtype)))
    outputs = [
        helper.make_tensor_value_info("loss", elem, []),
        helper.make_tensor_value_info("logits", elem, ["N", *logit_shape]),
    ]
    news, extra = [], []
    step = None
    if optimizer.counts_steps:
        step = STEP
        b.initializers.append((STEP, _state(weights, STEP, (), b.dtype)))
        inputs.append(helper.make_tensor_value_info(STEP, elem, []))
        b.layer = "optimizer"
        b.op("Add", [STEP, b.scalar(1.0)], out=STEP + ".new")
        news.append(helper.make_tensor_value_info(STEP + ".new", elem, []))
    for name in trainable:
        shape = list(inits[name].shape)
        b.layer = f"{optimizer.name}:{name}"
        inputs.append(helper.make_tensor_value_info(name, elem, shape))
        buffers = {}
        for suffix in optimizer.buffers():
            buf = f"{name}.{suffix}"
            b.initializers.append((buf, _state(weights, buf, shape, b.dtype)))
            inputs.append(helper.make_tensor_value_info(buf, elem, shape))
            buffers[suffix] = buf
        for out in emit_update(b, optimizer, name, grads[name], buffers, step):
            news.append(helper.make_tensor_value_info(out, elem, shape))
        if gradients:
            b.op("Identity", [grads[name]], out=name + ".grad")
            extra.append(helper.make_tensor_value_info(name + ".grad", elem, shape))
    for buf, value in b.updates:
        shape = list(inits[buf].shape)
        inputs.append(helper.make_tensor_value_info(buf, elem, shape))
        b.layer = "bn:" + buf
        b.op("Identity", [value], out=buf + ".new")
        news.append(helper.make_tensor_value_info(buf + ".new", elem, shape))
    if wrt_input:
        b.op("Identity", [grads["input"]], out="input.grad")
        extra.append(helper.make_tensor_value_info("input.grad", elem, ["N", *graph.input_shape]))
    b.layer = "x"
    b.nodes.insert(0, helper.make_node("Identity", ["x"], ["input"], name="x"))
    meta = {
        "cnndsl.defines": ", ".join(f"{k}={v}" for k, v in graph.defines.items()),
        "cnndsl.seed": str(seed),
        "cnndsl.dtype": dtype,
        "cnndsl.graph": "train",
        "cnndsl.loss": loss,
        "cnndsl.output": out_name,
        "cnndsl.optimizer": optimizer.name,
        "cnndsl.momentum": repr(optimizer.momentum),
        "cnndsl.nesterov": str(optimizer.nesterov).lower(),
        "cnndsl.weight_decay": repr(optimizer.weight_decay),
        "cnndsl.label_smoothing": repr(label_smoothing),
    }
    if ignore_index is not None:
        meta["cnndsl.ignore_index"] = str(ignore_index)
    if optimizer.counts_steps:
        meta["cnndsl.betas"] = f"{optimizer.betas[0]!r}, {optimizer.betas[1]!r}"
        meta["cnndsl.eps"] = repr(optimizer.eps)
    _prune(b, [o.name for o in outputs + news + extra], {i.name for i in inputs})
    proto = assemble(b, inputs, outputs + news + extra, metadata=meta)
    if check:  # the full ONNX checker, on a copy without the large initializers
        onnx.checker.check_model(light_copy(proto), full_check=True)
    return proto, dict(b.params)


def _state(weights, name, shape, dtype):
    """An optimizer buffer or step count from a checkpoint (``cnndsl train`` saves them), else zeros."""
    given = None if weights is None else weights.get(name)
    if given is None:
        return np.zeros(shape, dtype)
    if tuple(np.shape(given)) != tuple(shape):
        raise CnnError(
            f"the weights file does not fit the network: wrong shape: {name}: expected {tuple(shape)}, "
            f"got {tuple(np.shape(given))}",
            code="E081",
        )
    return np.asarray(given, dtype)


def _prune(b, outputs, inputs) -> None:
    """Drop the nodes no output depends on, and the constants only they read: adjoint
    rules give every input's gradient, and some are not needed (the image's, the
    fixed RBF centres'); onnxruntime would compute them at every step."""
    needed = set(outputs)
    kept = []
    for node in reversed(b.nodes):
        if any(o in needed for o in node.output):
            kept.append(node)
            needed.update(i for i in node.input if i)
    b.nodes[:] = kept[::-1]
    b.initializers[:] = [(n, a) for n, a in b.initializers if n in needed or n in inputs]


def _static_shapes(b, graph) -> dict[str, tuple]:
    """Shapes of every forward tensor by ONNX shape inference, with batch SHAPE_BATCH."""
    import onnx
    from onnx import helper

    probe = assemble(
        b, [helper.make_tensor_value_info("input", b.elem, [SHAPE_BATCH, *graph.input_shape])], [], initializers=[]
    )
    g = probe.graph
    for name, arr in b.initializers:
        if arr.size > 64:  # weights: their type and shape is all inference needs
            g.input.append(
                helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(arr.dtype), list(arr.shape))
            )
        else:
            from onnx import numpy_helper

            g.initializer.append(numpy_helper.from_array(np.asarray(arr), name))
    inferred = onnx.shape_inference.infer_shapes(probe, strict_mode=True, data_prop=True)
    shapes = {name: tuple(arr.shape) for name, arr in b.initializers}
    for vi in list(inferred.graph.value_info) + list(inferred.graph.input):
        dims = vi.type.tensor_type.shape.dim
        if all(d.HasField("dim_value") for d in dims):
            shapes[vi.name] = tuple(d.dim_value for d in dims)
    for node in graph.nodes:  # layer outputs: ours (the IR is the authority)
        shapes[b.tensor(node.id)] = (SHAPE_BATCH, *node.shape)
    return shapes


def step_names(proto) -> dict[str, str]:
    """Which output feeds which input at the next step: ``{"conv_1.weight.new": "conv_1.weight", ...}``."""
    return {o.name: o.name[: -len(".new")] for o in proto.graph.output if o.name.endswith(".new")}


def held_out_figures(loss: str, output: str, outs: np.ndarray, y: np.ndarray, ignore_index: int | None = None):
    """(loss, accuracy, predictions) of the inference outputs ``outs`` on labels ``y``, as each
    engine reports them (``output``: :func:`cnndsl.train.step.output_meaning`). Per-position
    labels (N, H, W) give the mean loss and the accuracy over the positions whose label is not
    ``ignore_index``, and predictions (N, H, W)."""
    if loss == "mse":
        return float(((outs - y) ** 2).mean()), None, outs
    pred = outs.argmin(1) if output == "distances" else outs.argmax(1)  # trainer.predicted_classes
    scores = -outs if output == "distances" else outs
    if loss == "map":  # the criterion's constant score −j (cnndsl.train.MAP_J)
        scores = np.concatenate([scores, np.full((len(scores), 1), -MAP_J, scores.dtype)], axis=1)
    if output == "probabilities":
        logp = np.log(np.clip(outs, 1e-30, None))
    else:
        z = scores - scores.max(1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(1, keepdims=True))
    keep = np.ones(y.shape, bool) if ignore_index is None else y != ignore_index
    labelled = int(keep.sum())
    nll = -np.take_along_axis(logp, np.where(keep, y, 0)[:, None], 1)[:, 0]
    loss = float(nll[keep].sum() / max(labelled, 1))
    return loss, float((pred == y)[keep].sum() / max(labelled, 1)), pred
