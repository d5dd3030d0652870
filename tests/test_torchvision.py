"""The networks of networks/ that follow torchvision, run against torchvision itself.

Each test builds the torchvision model (random initialisation, fixed seed, eval mode; batch
norm statistics, affine parameters and ConvNeXt's layer scale drawn at random too, so that no
layer is an identity), copies its weights into cnndsl's ONNX export, runs the export on
onnxruntime and compares the outputs with torchvision's in float32.

The weights are matched by order, not by name: torchvision's parameters and buffers in the
order their modules run (a forward hook on every module that holds tensors of its own), and
cnndsl's in the order of its layers; every pair must have the same shape (a 1x1 convolution's
(K, C, 1, 1) taking a Linear's (K, C): ConvNeXt's two Linear layers per block).

Skipped unless torch and torchvision are importable: CI has neither; the project does not depend
on them. Run by hand in an environment that has them (torch 2.14.1, torchvision 0.29.1 here):

    python -m pytest tests/test_torchvision.py -m slow   # every model, the large ones included
"""

import copy

import numpy as np
import pytest
from conftest import NETWORKS

import cnndsl

torch = pytest.importorskip("torch")
models = pytest.importorskip("torchvision.models")
ort = pytest.importorskip("onnxruntime")

from cnndsl.lower.builder import lower_nodes  # noqa: E402
from cnndsl.lower.export import to_onnx  # noqa: E402

EFFICIENTNET = {  # torchvision's _efficientnet_conf and builders: width, depth, dropout, crop size
    0: (1.0, 1.0, 0.2, 224),
    1: (1.0, 1.1, 0.2, 240),
    2: (1.1, 1.2, 0.3, 288),
    3: (1.2, 1.4, 0.3, 300),
    4: (1.4, 1.8, 0.4, 380),
    5: (1.6, 2.2, 0.4, 456),
    6: (1.8, 2.6, 0.5, 528),
    7: (2.0, 3.1, 0.5, 600),
}


def efficientnet(i):
    width, depth, dropout, size = EFFICIENTNET[i]
    defines = {"width": width, "depth": depth, "dropout": dropout}
    if i >= 5:
        defines["eps"] = 0.001  # torchvision's B5-B7: BatchNorm2d(eps=0.001, momentum=0.01)
    return ("efficientnet.net", None, defines, size)


# id: (torchvision builder, (file, network, defines, input size)); slow: over ~20M parameters
CASES = {
    "mobilenet_v3_large": (lambda: models.mobilenet_v3_large(), ("mobilenet_v3.net", "mobilenet_v3_large", {}, 224)),
    "mobilenet_v3_large_w0.75": (
        lambda: models.mobilenet_v3_large(width_mult=0.75),
        ("mobilenet_v3.net", "mobilenet_v3_large", {"width": 0.75}, 224),
    ),
    "mobilenet_v3_small": (lambda: models.mobilenet_v3_small(), ("mobilenet_v3.net", "mobilenet_v3_small", {}, 224)),
    "mobilenet_v3_small_w0.75": (
        lambda: models.mobilenet_v3_small(width_mult=0.75),
        ("mobilenet_v3.net", "mobilenet_v3_small", {"width": 0.75}, 224),
    ),
    **{f"efficientnet_b{i}": (getattr(models, f"efficientnet_b{i}"), efficientnet(i)) for i in range(8)},
    **{
        f"mnasnet{a}": (
            getattr(models, f"mnasnet{a}"),
            ("mnasnet.net", None, {"alpha": float(a.replace("_", "."))}, 224),
        )
        for a in ("0_5", "0_75", "1_0", "1_3")
    },
    **{
        f"shufflenet_v2_x{a}": (
            getattr(models, f"shufflenet_v2_x{a}"),
            ("shufflenet_v2.net", f"shufflenet_v2_x{a}", {}, 224),
        )
        for a in ("0_5", "1_0", "1_5", "2_0")
    },
    **{
        f"convnext_{a}": (getattr(models, f"convnext_{a}"), ("convnext.net", f"convnext_{a}", {}, 224))
        for a in ("tiny", "small", "base")
    },
    "googlenet_aux": (
        lambda: models.googlenet(aux_logits=True, transform_input=False, init_weights=False),
        ("googlenet_tv.net", None, {}, 224),
    ),
}
SLOW = {"efficientnet_b4", "efficientnet_b5", "efficientnet_b6", "efficientnet_b7", "convnext_small", "convnext_base"}


def randomise(model, gen):
    """Batch norm statistics and affine parameters, LayerNorm affine parameters and layer scales
    drawn at random (torchvision initialises them to 0, 1 or 1e-6)."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.normal_(0.0, 0.1, generator=gen)
                module.running_var.uniform_(0.5, 1.5, generator=gen)
            if isinstance(module, torch.nn.BatchNorm2d | torch.nn.LayerNorm):
                module.weight.uniform_(0.5, 1.5, generator=gen)
                module.bias.normal_(0.0, 0.1, generator=gen)
            if hasattr(module, "layer_scale"):
                module.layer_scale.uniform_(0.5, 1.5, generator=gen)


def execution_order(model, size):
    """torchvision's tensors (name, array) in the order their modules run, parameters before
    buffers within a module (num_batches_tracked left out). A training-mode forward of a copy, so
    that GoogLeNet's auxiliary heads run too (in eval mode they are skipped)."""
    twin = copy.deepcopy(model).train()
    names = {id(m): n for n, m in twin.named_modules()}
    order = []

    def hook(module, inputs, output):
        if module not in order:
            order.append(module)

    holders = [
        m for m in twin.modules() if any(True for _ in m.parameters(recurse=False)) or list(m.buffers(recurse=False))
    ]
    handles = [m.register_forward_hook(hook) for m in holders]
    with torch.no_grad():
        twin(torch.zeros(2, 3, size, size))
    for h in handles:
        h.remove()
    assert len(order) == len(holders), "a module with weights did not run"
    state = model.state_dict()
    out = []
    for module in order:
        prefix = names[id(module)]
        tensors = [n for n, _ in module.named_parameters(recurse=False)]
        tensors += [n for n, _ in module.named_buffers(recurse=False) if n != "num_batches_tracked"]
        out += [(f"{prefix}.{n}", state[f"{prefix}.{n}"].numpy()) for n in tensors]
    return out


def cnndsl_weights(model):
    """cnndsl's weight names and shapes in the order of its layers."""
    b = lower_nodes(model.graph, 17)
    shapes = {name: arr.shape for name, arr in b.initializers}
    return [(name, shapes[name]) for name in b.params]


def map_weights(torch_tensors, ours):
    """cnndsl name -> torchvision array, pair by pair in order; every pair of one shape (a (K, C) Linear
    weight reshaped to a (K, C, 1, 1) 1x1 convolution, a (C, 1, 1) layer scale to cnndsl's shape)."""
    assert len(torch_tensors) == len(ours), (len(torch_tensors), len(ours))
    weights = {}
    for (tname, arr), (name, shape) in zip(torch_tensors, ours):
        same = arr.shape == shape or (
            arr.size == np.prod(shape) and arr.squeeze().shape == tuple(s for s in shape if s != 1)
        )
        assert same, f"{tname} {arr.shape} cannot be {name} {shape}"
        weights[name] = arr.reshape(shape)
    return weights


@pytest.mark.parametrize(
    "case", [pytest.param(c, marks=[pytest.mark.slow] if c in SLOW else []) for c in CASES], ids=list(CASES)
)
def test_same_outputs_as_torchvision(case):
    build, (file, network, defines, size) = CASES[case]
    torch.manual_seed(0)
    reference = build().eval()
    randomise(reference, torch.Generator().manual_seed(1))
    ours = cnndsl.load(NETWORKS / file, network=network, defines=defines, input=(3, size, size))
    weights = map_weights(execution_order(reference, size), cnndsl_weights(ours))

    x = np.random.default_rng(2).standard_normal((2, 3, size, size), dtype=np.float32)
    with torch.no_grad():
        expected = reference(torch.from_numpy(x))
        if case == "googlenet_aux":  # eval mode returns the main output only: run the heads on 4a, 4d
            expected = [expected, *aux_outputs(reference, torch.from_numpy(x))]
    expected = [e.numpy() for e in (expected if isinstance(expected, list) else [expected])]

    proto = to_onnx(ours, weights=weights)
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: x})
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        assert g.shape == e.shape
        error = float(np.abs(g - e).max() / np.abs(e).max())
        print(f"{case}: output {e.shape}, max |difference| / max |torchvision| = {error:.2e}")
        assert error < 1e-5


def aux_outputs(m, x):
    """GoogLeNet's auxiliary heads (eval mode) on the outputs of inception 4a and 4d."""
    seen = {}
    hooks = [
        getattr(m, n).register_forward_hook(lambda mod, i, o, n=n: seen.__setitem__(n, o))
        for n in ("inception4a", "inception4d")
    ]
    m(x)
    for h in hooks:
        h.remove()
    return [m.aux1(seen["inception4a"]), m.aux2(seen["inception4d"])]
