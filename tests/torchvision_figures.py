"""The torchvision figures that tests/test_networks.py quotes, counted from torchvision itself.

Not a test and not run by CI (it needs torch and torchvision, which the project does not
depend on). Run it by hand in a virtual environment that has them:

    python tests/torchvision_figures.py

It prints, per model: trainable parameters (sum of p.numel() over model.parameters()),
MACs at the model's default input size (forward hooks on Conv2d and Linear: output elements
times in_channels/groups times the kernel for a convolution, output elements times
in_features for a linear layer; batch 1) and the output shape.
"""

import torch
from torchvision import models


def count(model, size, aux=False):
    """(params, MACs, output shape); ``aux``: a training-mode forward, so GoogLeNet's auxiliary heads run."""
    params = sum(p.numel() for p in model.parameters())
    macs = [0]

    def hook(module, inputs, output):
        if isinstance(module, torch.nn.Conv2d):
            k = module.kernel_size[0] * module.kernel_size[1]
            macs[0] += output.numel() * module.in_channels // module.groups * k
        else:
            macs[0] += output.numel() * module.in_features

    handles = [
        m.register_forward_hook(hook) for m in model.modules() if isinstance(m, torch.nn.Conv2d | torch.nn.Linear)
    ]
    model.train(aux)
    with torch.no_grad():
        out = model(torch.zeros(1, 3, size, size))
    for h in handles:
        h.remove()
    shapes = [tuple(o.shape[1:]) for o in out] if isinstance(out, tuple) else tuple(out.shape[1:])
    return params, macs[0], shapes


EFFICIENTNET_SIZES = [224, 240, 288, 300, 380, 456, 528, 600]  # the weights' crop_size, B0 ... B7

MODELS = [
    ("mobilenet_v3_large", lambda: models.mobilenet_v3_large(), 224),
    ("mobilenet_v3_large(width_mult=0.75)", lambda: models.mobilenet_v3_large(width_mult=0.75), 224),
    ("mobilenet_v3_small", lambda: models.mobilenet_v3_small(), 224),
    ("mobilenet_v3_small(width_mult=0.75)", lambda: models.mobilenet_v3_small(width_mult=0.75), 224),
    *[(f"efficientnet_b{i}", getattr(models, f"efficientnet_b{i}"), s) for i, s in enumerate(EFFICIENTNET_SIZES)],
    *[(f"mnasnet{a}", getattr(models, f"mnasnet{a}"), 224) for a in ("0_5", "0_75", "1_0", "1_3")],
    *[(f"shufflenet_v2_x{a}", getattr(models, f"shufflenet_v2_x{a}"), 224) for a in ("0_5", "1_0", "1_5", "2_0")],
    *[(f"convnext_{a}", getattr(models, f"convnext_{a}"), 224) for a in ("tiny", "small", "base")],
    ("googlenet", lambda: models.googlenet(aux_logits=False, init_weights=False), 224),
]


def main():
    torch.manual_seed(0)
    for name, make, size in MODELS:
        print(name, size, *count(make(), size))
    m = models.googlenet(aux_logits=True, init_weights=False)
    print("googlenet(aux_logits=True), training-mode forward", 224, *count(m, 224, aux=True))


if __name__ == "__main__":
    main()
