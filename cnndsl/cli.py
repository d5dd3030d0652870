"""The ``cnndsl`` command line.

Exit status: 0 success (warnings allowed), 1 an error in the user's input,
2 a usage error (bad options), 3 an internal error (a bug: please report it).
The ``info`` and ``check`` commands never import onnx or onnxruntime.
"""

from __future__ import annotations

import atexit
import gc
import os
import sys

from cnndsl.cmdline import argparse
from cnndsl.errors import CnnError, Diagnostic
from cnndsl.files import read_bytes, refuse_overwrite
from cnndsl.ir.compile import compile_network, load, load_module, net_sources, run_deep
from cnndsl.version import __version__


def _terminal_columns() -> int:
    """``shutil.get_terminal_size().columns`` without importing shutil (it imports bz2 and lzma:
    3 ms of start-up): $COLUMNS, else the width of the terminal of stdout, else 80."""
    try:
        columns = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns or 80
        except (AttributeError, ValueError, OSError):
            columns = 80
    return columns


class _Formatter(argparse.HelpFormatter):
    """argparse's help formatter, its default width found as argparse does, without shutil."""

    def __init__(self, prog, indent_increment=2, max_help_position=24, width=None):
        super().__init__(prog, indent_increment, max_help_position, _terminal_columns() - 2 if width is None else width)


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", _Formatter)
        super().__init__(*args, **kwargs)

    def error(self, message):  # usage errors: exit 2 with the usage line
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: usage error: {message}\n")


def _define(text: str):
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected name=value, got {text!r}")
    name, value = text.split("=", 1)
    return name.strip(), value.strip()


def _graph_output(text: str) -> str:
    from pathlib import Path

    suffix = Path(text).suffix.lower()
    if suffix not in (".svg", ".png", ".dot"):
        raise argparse.ArgumentTypeError(
            f"unknown format {suffix or '(no extension)'} of {text!r}; choose .svg, .png or .dot"
        )
    return text


def _int_at_least(low: int, what: str = "an integer"):
    """An argparse type: an integer of at least ``low`` (a usage error otherwise)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < low:
            raise argparse.ArgumentTypeError(f"expected {what} of {low} or more, got {text!r}")
        return value

    return parse


# the columns of `cnndsl info --columns` (cnndsl.tools.table.COLUMNS, named here to keep the import light)
_INFO_COLUMNS = ("kind", "output", "params", "trainable", "macs", "connections", "rf", "inputs", "line")


def _info_columns(text: str) -> tuple[str, ...]:
    """``kind,output,params`` -> the column keys; the layer name is always the first column."""
    from cnndsl.errors import did_you_mean

    names = [c.strip().lower() for c in text.split(",")]
    if names and names[0] == "layer":
        names = names[1:]
    for name in names:
        if name not in _INFO_COLUMNS:
            hint = " (the layer name is always the first column)" if name == "layer" else ""
            raise argparse.ArgumentTypeError(
                f"unknown column {name!r}{did_you_mean(name, _INFO_COLUMNS)}{hint}; choose from "
                + ", ".join(_INFO_COLUMNS)
            )
    if not names or len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(f"expected distinct column names separated by commas, got {text!r}")
    return tuple(names)


def _weights_fit(build, model):
    """Run ``build()`` (which makes the model's weight arrays); running out of memory is a user error."""
    try:
        return build()
    except MemoryError:
        raise CnnError(
            f"not enough memory for the weights of network {model.name}: {model.totals.params:,} parameters "
            f"({model.totals.params * 4:,} bytes as float32)",
            code="E301",
        ) from None


COMMANDS = ("info", "export", "train", "run", "predict", "graph", "import", "check", "fmt")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The command line. ``command``: the subcommand being run, when known: the others are listed
    (their names and help) but get no options, which parses that command's arguments the same and
    saves a third of the time of building them all (start-up)."""

    def want(name: str) -> bool:
        return command is None or command == name

    p = _Parser(prog="cnndsl", description="Compile .net descriptions of convolutional networks.")
    p.add_argument("--version", action="version", version=f"cnndsl {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    def network_options(q):
        q.add_argument("--network", "-n", metavar="NAME", help="which network of the file (when it has several)")
        q.add_argument(
            "-D",
            dest="defines",
            metavar="NAME=VALUE",
            action="append",
            type=_define,
            default=[],
            help="set a network parameter, e.g. -D classes=10 (repeatable)",
        )
        q.add_argument("--input", metavar="CxHxW", help="override the input shape, e.g. 3x512x512")
        q.add_argument(
            "--max-layers", type=_int_at_least(1), metavar="N", help="limit on unrolled layers (default 1,000,000)"
        )

    info = sub.add_parser("info", help="per-layer shapes, parameters, MACs and totals")
    if want("info"):
        info.add_argument("file", metavar="FILE")
        network_options(info)
        info.add_argument("--json", action="store_true", help="print JSON instead of a table")
        info.add_argument(
            "--depth",
            type=_int_at_least(0, "a block depth"),
            metavar="N",
            help="block instances nested deeper than N calls as one row, figures summed (as graph --depth)",
        )
        info.add_argument(
            "--batch",
            type=_int_at_least(1, "a batch size"),
            metavar="N",
            help="shapes with the batch N first; activation and training memory for N samples",
        )
        info.add_argument(
            "--columns",
            type=_info_columns,
            metavar="A,B,...",
            help="the columns after the layer name, in order: " + ", ".join(_INFO_COLUMNS) + " (default "
            "kind,output,params,macs,rf); with --json, the keys of each layer",
        )
        info.set_defaults(run=cmd_info)

    export = sub.add_parser("export", help="write an ONNX model (checked, atomic) or a PyTorch module")
    if want("export"):
        export.add_argument("file", metavar="FILE")
        network_options(export)
        export.add_argument("-o", "--output", required=True, metavar="OUT.onnx", help="where to write the model")
        export.add_argument(
            "--format",
            choices=("onnx", "torch"),
            default="onnx",
            help="onnx (default), or torch: a self-contained PyTorch module (.py) whose state dict has the ONNX names",
        )
        export.add_argument("--opset", type=int, default=None, help="ONNX opset (default 17; 17 to 21)")
        export.add_argument("--seed", type=int, default=0, help="seed of the initial weights (default 0)")
        export.add_argument(
            "--weights",
            metavar="FILE",
            help="trained weights by name (<layer>.weight ...): .npz, .safetensors, .pt/.pth",
        )
        export.add_argument(
            "--map", metavar="FILE", help="regex renames of the --weights names (PATTERN REPLACEMENT lines)"
        )
        export.add_argument(
            "--map-by",
            choices=("name", "order"),
            default="name",
            help="order: pair the tensors still unmatched with the network's weights in order, by shape",
        )
        export.add_argument("--batch", type=int, metavar="N", help="a fixed batch size instead of a dynamic N")
        export.add_argument("--fold-bn", action="store_true", help="fold batch norm into the conv/fc before it")
        export.add_argument(
            "--dtype",
            choices=("float32", "float16", "float64"),
            default="float32",
            help="precision of inputs, outputs and weights (float16: for CUDA)",
        )
        train_opts = export.add_argument_group("training graph (--train)")
        train_opts.add_argument(
            "--train", action="store_true", help="write the training-step graph: forward, loss, gradients, SGD update"
        )
        train_opts.add_argument(
            "--loss",
            choices=("cross_entropy", "mse", "map"),
            help="default: map (LeNet-5's criterion) for an rbf output, else cross_entropy",
        )
        train_opts.add_argument("--optimizer", choices=("sgd", "adam", "adamw"), default="sgd")
        train_opts.add_argument("--lr", type=float, default=0.01, help="default of the lr input (default 0.01)")
        train_opts.add_argument("--momentum", type=float, default=None, help="SGD momentum (default 0.9)")
        train_opts.add_argument("--nesterov", action="store_true", help="Nesterov momentum (SGD)")
        train_opts.add_argument(
            "--weight-decay", type=float, default=None, help="weight decay (default 0; adamw 0.01, decoupled)"
        )
        train_opts.add_argument(
            "--label-smoothing",
            type=float,
            default=0.0,
            metavar="EPS",
            help="cross_entropy label smoothing (default 0)",
        )
        train_opts.add_argument(
            "--ignore-index", type=int, metavar="K", help="labels equal to K add nothing to the loss (as PyTorch's)"
        )
        export.set_defaults(run=cmd_export)

    trainp = sub.add_parser("train", help="train a network with onnxruntime (SGD, held-out evaluation, checkpoints)")
    if want("train"):
        trainp.add_argument("file", metavar="FILE")
        network_options(trainp)
        trainp.add_argument(
            "--data",
            required=True,
            metavar="SOURCE",
            help="digits (built in), DATA.npz (x, y), IMAGES.idx[,LABELS.idx] or a folder of class folders",
        )
        trainp.add_argument(
            "--masks",
            metavar="FOLDER",
            help="per-pixel labels: mask images (class index per pixel) named as the images of the folder --data",
        )
        trainp.add_argument(
            "--ignore-index",
            type=int,
            metavar="K",
            help="per-pixel labels equal to K count in neither loss nor metrics (as PyTorch's; VOC masks: 255)",
        )
        trainp.add_argument("--epochs", type=int, default=10, help="passes over the training split (default 10)")
        trainp.add_argument("--batch", type=int, default=64, help="batch size (default 64)")
        trainp.add_argument(
            "--optimizer", choices=("sgd", "adam", "adamw"), default="sgd", help="PyTorch's definitions (default sgd)"
        )
        trainp.add_argument(
            "--lr",
            type=float,
            default=None,
            help="learning rate (default: adam/adamw 0.001; SGD 0.001 on an rbf output, 0.1 with bn, else 0.01)",
        )
        trainp.add_argument("--momentum", type=float, default=None, help="SGD momentum (default 0.9)")
        trainp.add_argument("--nesterov", action="store_true", help="Nesterov momentum (SGD)")
        trainp.add_argument(
            "--weight-decay",
            type=float,
            default=None,
            help="weight decay: L2 for sgd and adam, decoupled for adamw (default 0; adamw 0.01, as PyTorch)",
        )
        trainp.add_argument(
            "--schedule",
            choices=("constant", "cosine", "step"),
            default="constant",
            help="learning rate per step: constant (default), cosine decay, or step (÷10 at 1/2 and 3/4)",
        )
        trainp.add_argument(
            "--warmup",
            type=float,
            default=0.0,
            metavar="EPOCHS",
            help="linear warm-up over the first EPOCHS (may be fractional) before the schedule (default 0)",
        )
        trainp.add_argument(
            "--loss",
            choices=("cross_entropy", "map"),
            help="default: map (LeNet-5's criterion) for an rbf output, else cross_entropy",
        )
        trainp.add_argument(
            "--label-smoothing",
            type=float,
            default=0.0,
            metavar="EPS",
            help="cross_entropy's target (1 - EPS)·onehot + EPS/classes, as PyTorch (default 0)",
        )
        trainp.add_argument(
            "--held-out",
            type=float,
            default=0.2,
            metavar="FRACTION",
            help="fraction kept for evaluation, stratified (default 0.2)",
        )
        trainp.add_argument(
            "--augment",
            metavar="flip,crop[=P]",
            help="training batches only, seeded: random horizontal flip (p 1/2), random crop after zero padding "
            "P pixels (default 4)",
        )
        trainp.add_argument("--provider", choices=("auto", "cuda", "cpu"), default="auto")
        trainp.add_argument("--out", metavar="WEIGHTS.npz", help="checkpoint written each epoch (default NETWORK.npz)")
        trainp.add_argument(
            "--keep",
            choices=("best", "last", "both"),
            default="both",
            help="what --out holds: the best held-out epoch's weights or the last's; both (default): the last, "
            "and the best in OUT.best.npz",
        )
        trainp.add_argument(
            "--resume",
            metavar="WEIGHTS.npz",
            help="go on from a checkpoint: its weights, optimizer state, epoch, schedule and shuffling",
        )
        tune = trainp.add_argument_group("fine-tuning")
        tune.add_argument(
            "--weights",
            metavar="WEIGHTS.npz",
            help="start from these weights (a checkpoint or an export's); names it lacks are initialised",
        )
        tune.add_argument(
            "--freeze",
            nargs="+",
            action="extend",
            default=[],
            metavar="PREFIX",
            help="parameters whose name starts with PREFIX get no gradient and no update",
        )
        tune.add_argument(
            "--reset",
            nargs="+",
            action="extend",
            default=[],
            metavar="PREFIX",
            help="parameters whose name starts with PREFIX are initialised afresh (a new classifier)",
        )
        trainp.add_argument(
            "--seed",
            type=int,
            default=None,
            help="initial weights, shuffling, split, dropout (default 0; a resumed run keeps its checkpoint's)",
        )
        engine = trainp.add_argument_group("engine (docs/distributed.md)")
        engine.add_argument(
            "--engine",
            choices=("onnxruntime", "torch"),
            default="onnxruntime",
            help="onnxruntime (the train-step graph; default) or torch (the generated module, DDP)",
        )
        engine.add_argument("--nproc", type=int, default=1, help="--engine torch: processes on this machine (DDP)")
        engine.add_argument(
            "--device", choices=("cpu", "cuda"), default="cpu", help="--engine torch: cpu (gloo) or cuda (NCCL)"
        )
        trainp.set_defaults(run=cmd_train)

    runp = sub.add_parser("run", help="run a model on onnxruntime: latency, throughput, outputs")
    if want("run"):
        runp.add_argument("file", metavar="FILE.onnx|FILE.net")
        network_options(runp)
        runp.add_argument("--provider", choices=("auto", "cuda", "cpu"), default="auto")
        runp.add_argument("--batch", type=int, default=1, metavar="N", help="batch of the random input (default 1)")
        runp.add_argument("--iterations", type=int, default=20, metavar="K", help="timed runs (default 20)")
        runp.add_argument(
            "--data",
            metavar="DATA",
            help="input batch instead of random data: .npy, .npz, an image or a folder of images, "
            "prepared as train prepares data (the model's recorded preprocessing)",
        )
        runp.add_argument("--output", metavar="OUT.npy", help="write the outputs (.npy, or .npz for several)")
        runp.add_argument("--seed", type=int, default=0, help="weights seed when FILE is a .net")
        runp.set_defaults(run=cmd_run)

    pred = sub.add_parser("predict", help="classify images, folders of images or .npy/.npz arrays with a trained model")
    if want("predict"):
        pred.add_argument("file", metavar="MODEL.onnx|FILE.net")
        pred.add_argument(
            "inputs", nargs="+", metavar="INPUT", help="image files, folders of images, .npy or .npz files"
        )
        network_options(pred)
        pred.add_argument("--weights", metavar="W.npz", help="the checkpoint of cnndsl train (needed for a .net file)")
        pred.add_argument(
            "--top", type=_int_at_least(1), default=3, metavar="K", help="classes shown per sample (default 3)"
        )
        pred.add_argument("--output", metavar="OUT.npy|OUT.npz", help="write the outputs instead of printing classes")
        pred.add_argument("--provider", choices=("auto", "cuda", "cpu"), default="auto")
        pred.add_argument(
            "--batch", type=_int_at_least(1), default=64, metavar="N", help="samples per run (default 64)"
        )
        pred.set_defaults(run=cmd_predict)

    graph = sub.add_parser("graph", help="a diagram of a network: SVG, PNG or Graphviz DOT")
    if want("graph"):
        graph.add_argument("file", metavar="FILE")
        network_options(graph)
        graph.add_argument(
            "-o",
            "--output",
            type=_graph_output,
            metavar="OUT.svg|OUT.png|OUT.dot",
            help="where to write it; the extension picks the format (default NETWORK.svg here)",
        )
        graph.add_argument(
            "--depth",
            type=_int_at_least(0, "a block depth"),
            metavar="N",
            help="draw block instances nested deeper than N calls as one box (default: expand all)",
        )
        graph.set_defaults(run=cmd_graph)

    imp = sub.add_parser("import", help="convert a Caffe .prototxt, Darknet .cfg or ONNX model to a .net file")
    if want("import"):
        imp.add_argument("file", metavar="FILE.prototxt|FILE.cfg|FILE.onnx")
        imp.add_argument("-o", "--output", required=True, metavar="OUT.net", help="where to write the .net file")
        imp.add_argument("--name", metavar="NETWORK", help="name of the network (default: the source's)")
        imp.add_argument(
            "--input",
            metavar="CxHxW",
            help="the input shape of a Caffe file whose data layer does not give it (e.g. 1x28x28)",
        )
        imp.set_defaults(run=cmd_import)

    check = sub.add_parser("check", help="diagnostics only, for editors and CI")
    if want("check"):
        check.add_argument("files", nargs="+", metavar="FILE", help=".net files or folders of them")
        network_options(check)
        check.add_argument("--format", choices=("text", "json"), default="text", help="diagnostics as text or JSON")
        check.set_defaults(run=cmd_check)

    fmt = sub.add_parser("fmt", help="rewrite .net files in the canonical layout (comments kept)")
    if want("fmt"):
        fmt.add_argument(
            "files", nargs="+", metavar="FILE", help=".net files or folders of them; - for stdin to stdout"
        )
        fmt.add_argument(
            "--check", action="store_true", help="write nothing; list the files that would change, exit 1 if any would"
        )
        fmt.set_defaults(run=cmd_fmt)
    return p


def _print_diagnostics(diags, stream=None) -> None:
    stream = stream or sys.stderr
    for d in diags:
        print(d.format(show_code=True), file=stream)


def cmd_info(args) -> int:
    model = load(
        args.file, network=args.network, defines=dict(args.defines), input=args.input, max_layers=args.max_layers
    )
    _print_diagnostics(model.warnings)
    options = {"depth": args.depth, "batch": args.batch, "columns": args.columns}
    if args.json:
        import json  # lazily, like every import a command may not need (start-up time)

        print(json.dumps(model.to_json(args.depth, args.batch or 1, args.columns), indent=2))
        return 0
    # on a terminal the table fits its width (never cutting a figure); piped: 80 columns
    width = _terminal_columns() if sys.stdout.isatty() else 80
    if sys.stdout.isatty() and os.environ.get("NO_COLOR") is None:
        from cnndsl.tools.richtable import print_rich

        print_rich(model, width, **options)
    else:
        from cnndsl.tools.table import format_plain

        print(format_plain(model, width, **options))
    return 0


def cmd_export(args) -> int:
    from pathlib import Path

    from cnndsl.lower.builder import DEFAULT_OPSET
    from cnndsl.lower.export import to_onnx, write_model
    from cnndsl.train.contract import export_metadata

    out = Path(args.output)
    refuse_overwrite("-o", out, args.file, args.weights, imports=lambda: net_sources(args.file))
    if args.batch is not None and args.batch < 1:
        raise CnnError(f"--batch must be at least 1; received {args.batch}", code="E084")
    model = load(
        args.file, network=args.network, defines=dict(args.defines), input=args.input, max_layers=args.max_layers
    )
    _print_diagnostics(model.warnings)
    if args.format == "torch":
        return _export_torch(args, model, out)
    if (args.map or args.map_by != "name") and not args.weights:
        raise CnnError("--map and --map-by rename the tensors of --weights FILE; give it too", code="E084")
    weights, recorded = _matched_weights(args, model) if args.weights else (None, {})
    metadata = export_metadata(model, recorded, f"--weights {args.weights}")
    if args.train:
        from cnndsl.train.step import train_model

        if args.fold_bn or args.batch is not None:
            raise CnnError("--train cannot be combined with --fold-bn or --batch", code="E084")
        optimizer = _optimizer(args)
        proto = _weights_fit(
            lambda: train_model(
                model,
                loss=args.loss,
                lr=args.lr,
                seed=args.seed,
                weights=weights,
                dtype=args.dtype,
                opset=args.opset or DEFAULT_OPSET,
                optimizer=optimizer,
                label_smoothing=args.label_smoothing,
                ignore_index=args.ignore_index,
            ),
            model,
        )
        size = write_model(proto, out)
        loss = next(p.value for p in proto.metadata_props if p.key == "cnndsl.loss")
        news = sum(o.name.endswith(".new") for o in proto.graph.output)
        print(
            f"wrote {out} ({size:,} bytes): training step of network {model.name}, {len(proto.graph.node)} nodes, "
            f"{model.totals.trainable_params:,} trainable parameters, {news} updated tensors, loss {loss}, "
            f"{optimizer.describe()}, lr {args.lr}, "
            f"opset {proto.opset_import[0].version}"
        )
        return 0
    proto = _weights_fit(
        lambda: to_onnx(
            model,
            opset=args.opset or DEFAULT_OPSET,
            seed=args.seed,
            weights=weights,
            batch=args.batch,
            dtype=args.dtype,
            fold=args.fold_bn,
            metadata=metadata,
        ),
        model,
    )
    size = write_model(proto, out)
    print(
        f"wrote {out} ({size:,} bytes): network {model.name}, {len(proto.graph.node)} nodes, "
        f"{model.totals.params:,} parameters, opset {proto.opset_import[0].version}"
    )
    return 0


def _matched_weights(args, model) -> tuple[dict, dict]:
    """The --weights arrays under the network's names (--map, --map-by order), each rename printed,
    and the metadata the checkpoint recorded (empty for a file cnndsl train did not write)."""
    from cnndsl.lower.export import load_checkpoint, network_weights
    from cnndsl.lower.weights import match_weights, read_map

    if args.map_by == "order" and args.weights.endswith(".safetensors"):
        raise CnnError(
            f"--map-by order: {args.weights} does not keep the order of its tensors (.safetensors sorts them); "
            "use --map, or a .npz or .pt file",
            code="E084",
        )
    rules = read_map(args.map) if args.map else ()
    arrays, recorded = load_checkpoint(args.weights)
    weights, notes = match_weights(arrays, network_weights(model), rules, args.map_by == "order")
    for line in notes:
        print(line)
    return weights, recorded


def _export_torch(args, model, out) -> int:
    """export --format torch: the module's source, written atomically."""
    from cnndsl.files import write_atomic
    from cnndsl.lower.pytorch import Generator

    given = [
        name
        for name, value, default in (
            ("--weights", args.weights, None),
            ("--map", args.map, None),
            ("--train", args.train, False),
            ("--fold-bn", args.fold_bn, False),
            ("--batch", args.batch, None),
            ("--opset", args.opset, None),
            ("--dtype", args.dtype, "float32"),
        )
        if value != default
    ]
    if given:
        raise CnnError(
            f"--format torch writes the module's code only; {', '.join(given)} belong to --format onnx "
            "(load trained weights with model.load_state_dict)",
            code="E084",
        )
    gen = Generator(model.graph)
    text = gen.source()
    write_atomic(out, lambda f: f.write(text.encode("utf-8")))
    print(
        f"wrote {out} ({len(text.encode('utf-8')):,} bytes): PyTorch module {gen.class_name} of network {model.name}, "
        f"{len(gen.classes)} block class{'es' if len(gen.classes) != 1 else ''}, {model.totals.params:,} parameters"
    )
    return 0


def cmd_train(args) -> int:
    import signal
    from pathlib import Path

    from cnndsl.lower.export import load_weights
    from cnndsl.train.data import load_data, split
    from cnndsl.train.optim import default_lr
    from cnndsl.train.step import batch_normalised, default_loss, output_meaning
    from cnndsl.train.trainer import EpochTable, progress_bar, train, training_state

    if args.engine != "torch" and (args.nproc != 1 or args.device != "cpu"):
        raise CnnError("--nproc and --device are the torch engine's (add --engine torch)", code="E084")
    if args.nproc < 1 or args.batch < 2 * args.nproc:
        raise CnnError("--nproc must be at least 1 and --batch at least 2 per process", code="E084")
    if args.nproc > 1 and "WORLD_SIZE" not in os.environ:
        return _launch(args.nproc)
    rank = int(os.environ.get("RANK", "0"))
    if rank != 0:  # the other ranks of a data-parallel run train silently
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115
    if args.epochs < 1 or args.batch < 2:
        raise CnnError("--epochs must be at least 1 and --batch at least 2", code="E084")
    if not 0 <= args.held_out < 1:
        raise CnnError(f"--held-out must be in [0, 1); received {args.held_out}", code="E084")
    if args.warmup < 0:
        raise CnnError(f"--warmup must not be negative; received {args.warmup}", code="E084")
    model = load(
        args.file, network=args.network, defines=dict(args.defines), input=args.input, max_layers=args.max_layers
    )
    _print_diagnostics(model.warnings)
    out = Path(args.out or f"{model.name}.npz")
    if args.keep == "best" and args.held_out == 0:
        raise CnnError("--keep best needs held-out data to tell the best epoch (--held-out above 0)", code="E084")
    keep_best = args.keep != "last" and args.held_out > 0
    last_out = None if args.keep == "best" else out
    best_out = (out if args.keep == "best" else out.with_name(out.stem + ".best.npz")) if keep_best else None
    stopped_out = last_out or out.with_name(out.stem + ".interrupted.npz")  # where Ctrl-C saves
    for path in filter(None, (last_out, best_out)):
        refuse_overwrite("--out", path, args.file, *args.data.split(","), imports=lambda: net_sources(args.file))
    if args.resume and (args.weights or args.reset):
        raise CnnError("--resume goes on with a checkpoint's weights; --weights and --reset start anew", code="E084")
    resume = load_weights(args.resume) if args.resume else None
    start = load_weights(args.weights) if args.weights else None
    state = training_state(resume)
    seed = args.seed if args.seed is not None else (state.seed if state else 0)
    if state is not None and seed != state.seed:
        raise CnnError(
            f"--seed {seed}: {args.resume} was trained with seed {state.seed}, which chose its held-out split "
            "and shuffling; resume with that seed (or leave --seed out)",
            code="E084",
        )
    if state is not None and state.epochs_done >= args.epochs:
        raise CnnError(
            f"--resume {args.resume}: it has {state.epochs_done} epochs already; --epochs {args.epochs} "
            f"leaves nothing to do (pass --epochs {state.epochs_done + 1} or more)",
            code="E084",
        )
    from cnndsl.train.data import parse_augment

    augment = parse_augment(args.augment, model.graph.input_shape) if args.augment is not None else None
    out_shape = model.graph.nodes[model.graph.outputs[0][1]].shape
    data = load_data(
        args.data, model.graph.input_shape, out_shape[0], label_shape=tuple(out_shape[1:]) or None,
        masks=args.masks, ignore_index=args.ignore_index,
    )  # fmt: skip
    dense = data.y.ndim > 1  # a class per pixel: pixel accuracy and mean IoU
    if args.ignore_index is not None and not dense:
        raise CnnError("--ignore-index is for per-pixel labels (a network whose output is KxHxW)", code="E084")
    train_part, held = split(data, args.held_out, seed) if args.held_out > 0 else (data, None)
    from cnndsl.train.contract import Contract, checkpoint_metadata

    contract = Contract(tuple(model.graph.input_shape), data.preprocessing, data.names, output_meaning(model))
    loss = args.loss or default_loss(model)
    optimizer = _optimizer(args)
    lr = args.lr if args.lr is not None else default_lr(optimizer, output_meaning(model), batch_normalised(model))
    if lr <= 0:
        raise CnnError(f"--lr must be above 0; received {lr}", code="E084")
    print(f"network {model.name}: {model.totals.trainable_params:,} trainable parameters, loss {loss}")
    print(f"data {data.description}; {len(train_part.x):,} training, {len(held.x) if held else 0:,} held out")
    schedule = args.schedule + (f" after {args.warmup:g} warm-up epochs" if args.warmup else "")
    default = " (the default)" if args.lr is None else ""
    print(f"optimizer {optimizer.describe()}, lr {lr:g}{default}, schedule {schedule}")
    if augment is not None:
        print(f"augment training batches: {augment.describe()}")
    if args.resume:
        if state is None:
            print(
                f"resume {args.resume}: its weights and optimizer buffers; it holds no training state "
                "(an older checkpoint), so the epochs count from 1"
            )
        else:
            where = f"batch {state.batches_done + 1} of " if state.batches_done else ""
            print(
                f"resume {args.resume}: from {where}epoch {state.epochs_done + 1} of {args.epochs}, step "
                f"{state.steps_done:,}; the schedule and the shuffling go on (seed {state.seed})"
            )
    table = EpochTable(args.epochs, loss != "mse", held is not None, miou=dense)

    def ready(trainer):  # what fine-tuning initialised and froze, then the table's header
        initialised, frozen = trainer.tuning.get("initialised", []), trainer.tuning.get("frozen", [])
        if args.weights:
            print(
                f"weights {args.weights}: "
                + (f"initialised {_names(initialised)}" if initialised else "every one used")
            )
        if frozen:
            print(f"frozen {_names(frozen)}")
        print(table.header(), flush=True)

    def report(e):
        print(table.row(e), flush=True)

    stop = {"asked": False}

    def interrupt(signum, frame):  # the first Ctrl-C finishes the step; a second one stops at once
        stop["asked"] = True
        signal.signal(signal.SIGINT, signal.default_int_handler)

    previous = signal.signal(signal.SIGINT, interrupt)
    bar, stop_bar = progress_bar()
    try:
        result = train(
            model,
            train_part,
            held,
            epochs=args.epochs,
            batch=args.batch,
            lr=lr,
            provider=args.provider,
            seed=seed,
            out=last_out,
            best=best_out,
            metadata=checkpoint_metadata(contract),
            interrupted_out=stopped_out,
            resume=resume,
            report=report,
            progress=bar,
            loss=loss,
            schedule=args.schedule,
            optimizer=optimizer,
            warmup=args.warmup,
            label_smoothing=args.label_smoothing,
            should_stop=lambda: stop["asked"],
            weights=start,
            freeze=args.freeze,
            reset=args.reset,
            ready=ready,
            augment=augment,
            engine=args.engine,
            device=args.device,
            ignore_index=args.ignore_index,
        )
    finally:
        stop_bar()
        signal.signal(signal.SIGINT, previous)
    total = sum(e.seconds for e in result.epochs)
    if result.interrupted:
        epoch, done, per_epoch = result.interrupted
        where = f"after batch {done} of {per_epoch} of epoch {epoch}" if done else f"before epoch {epoch}"
        print(f"interrupted {where}; checkpoint in {stopped_out}", file=sys.stderr)
        print(f"resume with: {_resume_command(stopped_out)}", file=sys.stderr)
        return INTERRUPTED
    saved = []
    if last_out is not None:
        saved.append(f"{last_out} (last epoch, {result.epochs[-1].number})")
    if best_out is not None and result.best is not None:
        b = result.best
        figure = (
            f"mIoU {b.held_out_miou:.2%}"
            if b.held_out_miou is not None
            else f"accuracy {b.held_out_accuracy:.2%}"
            if b.held_out_accuracy is not None
            else f"loss {b.held_out_loss:.4f}"
        )
        saved.append(f"{best_out} (best held-out {figure}, epoch {b.number})")
    print(f"trained on {result.provider} in {total:.1f} s; weights in {' and '.join(saved)} (cnndsl export --weights)")
    return 0


def _launch(nproc: int) -> int:
    """This command again as ``nproc`` ranks on this machine, each ``cnndsl train`` without
    ``--nproc``, with the environment torch.distributed.run gives its workers (``RANK``,
    ``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``/``MASTER_PORT`` on localhost; rank 0 hosts
    the store). No elastic agent between: this process waits for the ranks, ends them all when
    one fails and exits with its code, and passes Ctrl-C and SIGTERM on to each rank once (they
    run in their own process group, so a terminal's Ctrl-C reaches them only through here)."""
    import importlib.util
    import signal
    import socket
    import subprocess
    import tempfile

    if importlib.util.find_spec("torch") is None:
        raise CnnError("--engine torch needs PyTorch (pip install 'cnndsl[torch]')", code="E088")
    argv, skip = [], False
    for a in sys.argv[1:]:
        if skip:
            skip = False
        elif a == "--nproc":
            skip = True
        elif not a.startswith("--nproc="):
            argv.append(a)
    with socket.socket() as s:  # a free port for the rendezvous (on this machine only)
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
    env.update(WORLD_SIZE=str(nproc), LOCAL_WORLD_SIZE=str(nproc), GROUP_RANK="0")
    env.setdefault("OMP_NUM_THREADS", "1")  # as torch.distributed.run: the ranks share the cores
    if sys.platform.startswith("linux"):  # gloo's connections on the loopback device, not the hostname's
        env.setdefault("GLOO_SOCKET_IFNAME", "lo")
    ranks, signalled = [], []

    def forward(signum, _frame):
        signalled.append(signum)
        for p in ranks:
            if p.poll() is None:
                p.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    # the other ranks' messages repeat rank 0's; they are shown when one of them fails first
    logs = [tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace") for _ in range(1, nproc)]  # noqa: SIM115
    try:
        for r in range(nproc):
            command = [sys.executable, "-m", "cnndsl", *argv]
            ranks.append(
                subprocess.Popen(
                    command,
                    env={**env, "RANK": str(r), "LOCAL_RANK": str(r), "CNNDSL_NPROC": str(nproc)},
                    stderr=logs[r - 1] if r else None,
                    start_new_session=True,
                )
            )
        code, first = _wait_ranks(ranks, lambda: bool(signalled))
        if first:
            logs[first - 1].seek(0)
            for line in logs[first - 1].read().splitlines():
                print(f"rank {first}: {line}", file=sys.stderr)
        return code
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for p in ranks:  # none outlives the launcher
            if p.poll() is None:
                p.kill()
                p.wait()
        for f in logs:
            f.close()


def _wait_ranks(ranks, signalled=lambda: False, settle_s: float = 3.0, grace_s: float = 10.0):
    """(0, None) when every rank ends with 0. Else (exit code, rank) of the failure to report:
    rank 0's when it failed by itself (a user error fails every rank alike, within
    ``settle_s``), else the first. The others, which would wait for the failed one for ever,
    are ended: SIGTERM, then SIGKILL after ``grace_s``. After Ctrl-C or SIGTERM was passed on
    (``signalled()``) nothing is ended: the ranks stop at the same step by themselves and rank 0
    writes its checkpoint; rank 0's code is the run's."""
    import subprocess
    import time

    running, failed = list(ranks), []
    while running and not (failed and not signalled()):
        try:
            pid, status = os.wait()
        except InterruptedError:  # pragma: no cover - os.wait retries by itself (PEP 475)
            continue
        done = next((p for p in running if p.pid == pid), None)
        if done is not None:
            done.returncode = os.waitstatus_to_exitcode(status)
            running.remove(done)
            failed += [done] if done.returncode != 0 else []
    if not failed:
        return 0, None
    settle = time.monotonic() + settle_s
    for p in running:
        try:
            if p.wait(max(0.0, settle - time.monotonic())) != 0:
                failed.append(p)
        except subprocess.TimeoutExpired:
            p.terminate()
    for p in running:
        try:
            p.wait(grace_s)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    shown = ranks[0] if ranks[0] in failed else failed[0]
    code = shown.returncode
    return (code if code > 0 else 128 - code), ranks.index(shown)  # killed by a signal: as a shell says it


def _names(names) -> str:
    """``3 parameters: fc.weight, fc.bias, …``, at most eight names."""
    shown = ", ".join(names[:8]) + (f", … ({len(names) - 8} more)" if len(names) > 8 else "")
    return f"{len(names)} parameter{'s' if len(names) != 1 else ''}: {shown}"


def _optimizer(args):
    """The optimizer of ``--optimizer``, ``--momentum`` (SGD's, default 0.9), ``--nesterov`` and
    ``--weight-decay`` (default 0; 0.01 for adamw, as PyTorch's AdamW)."""
    from cnndsl.train.optim import Optimizer

    if args.optimizer != "sgd" and args.momentum is not None:
        raise CnnError(f"--momentum is SGD's; {args.optimizer} keeps its own moving averages", code="E084")
    momentum = (0.9 if args.momentum is None else args.momentum) if args.optimizer == "sgd" else 0.0
    decay = args.weight_decay if args.weight_decay is not None else (0.01 if args.optimizer == "adamw" else 0.0)
    if args.lr is not None and args.lr < 0:
        raise CnnError("--lr, --momentum and --weight-decay must not be negative", code="E084")
    return Optimizer(args.optimizer, momentum=momentum, nesterov=args.nesterov, weight_decay=decay)


INTERRUPTED = 130  # 128 + SIGINT, as shells report a command stopped by Ctrl-C


def _resume_command(out) -> str:
    """This command line again, with ``--resume OUT`` (and ``--out OUT``) instead of any given."""
    import shlex

    args, skip = [], False
    for a in sys.argv[1:]:
        if skip:
            skip = False
            continue
        if a in ("--resume", "--out"):
            skip = True
            continue
        if a.startswith(("--resume=", "--out=")):
            continue
        args.append(a)
    nproc = ["--nproc", os.environ["CNNDSL_NPROC"]] if "CNNDSL_NPROC" in os.environ else []  # a rank of --nproc
    return shlex.join(["cnndsl", *args, *nproc, "--resume", str(out), "--out", str(out)])


def cmd_run(args) -> int:
    from pathlib import Path

    from cnndsl.lower.session import bar, percentile, save_outputs, time_model

    if args.iterations < 0 or args.batch < 1:
        raise CnnError("--iterations must be at least 0 and --batch at least 1", code="E084")
    path = Path(args.file)
    if args.output:
        refuse_overwrite(
            "--output",
            args.output,
            args.file,
            args.data,
            imports=None if args.file.endswith(".onnx") else lambda: net_sources(args.file),
        )
    if path.suffix == ".onnx":
        model_bytes = read_bytes(path, "E040")
        name = path.name
    else:
        from cnndsl.lower.export import to_onnx

        model = load(
            args.file, network=args.network, defines=dict(args.defines), input=args.input, max_layers=args.max_layers
        )
        _print_diagnostics(model.warnings)
        model_bytes = _weights_fit(lambda: to_onnx(model, seed=args.seed).SerializeToString(), model)
        name = f"{model.name} ({args.file})"
    data = None
    if args.data:
        from cnndsl.train.contract import Contract
        from cnndsl.train.predict import onnx_contract, read_inputs

        if path.suffix == ".onnx":
            contract = onnx_contract(model_bytes, args.file)
        else:
            from cnndsl.train.step import output_meaning

            contract = Contract(tuple(model.graph.input_shape), output=output_meaning(model), recorded=False)
        inputs = read_inputs([args.data], contract, "--data")
        data = inputs.x
        print(f"data {inputs.descriptions[0]}")
    outputs, times, used, batch = time_model(
        model_bytes, args.provider, args.batch, args.iterations, data, progress=bar() if args.iterations >= 50 else None
    )
    print(f"model {name} on {used}, batch {batch}")
    for k, v in outputs.items():
        print(f"  output {k}: {'x'.join(map(str, v.shape))} {v.dtype}")
    if times:
        med, p90 = percentile(times, 0.5), percentile(times, 0.9)
        print(f"latency over {len(times)} runs: median {med * 1e3:.3f} ms, p90 {p90 * 1e3:.3f} ms")
        print(f"throughput: {batch / med:,.1f} samples/s")
    if args.output:
        save_outputs(outputs, Path(args.output))
        print(f"wrote {args.output}")
    return 0


def cmd_predict(args) -> int:
    from pathlib import Path

    from cnndsl.lower.session import save_outputs
    from cnndsl.train.predict import prediction_model, read_inputs, run_model, top_classes

    path = Path(args.file)
    if args.output:
        refuse_overwrite(
            "--output",
            args.output,
            args.file,
            args.weights,
            *args.inputs,
            imports=None if path.suffix == ".onnx" else lambda: net_sources(args.file),
        )
    opts = dict(network=args.network, defines=dict(args.defines), input=args.input, max_layers=args.max_layers)
    model_bytes, contract, warnings = prediction_model(args.file, args.weights, load_options=opts)
    _print_diagnostics(warnings)
    inputs = read_inputs(args.inputs, contract)
    outputs, used = run_model(model_bytes, inputs.x, args.provider, args.batch)
    names = contract.classes
    shown = (
        f"{len(names)} classes ({', '.join(names[:4])}{' ...' if len(names) > 4 else ''})"
        if names
        else "unnamed classes"
    )
    print(f"model {path.name} on {used}: {shown}; preprocessing: {contract.describe()}")
    for d in inputs.descriptions:
        print(f"data {d}")
    if args.output:
        save_outputs(outputs, Path(args.output))
        print(
            f"wrote {args.output}: {', '.join(f'{k} {chr(120).join(map(str, v.shape))}' for k, v in outputs.items())}"
        )
        predictions = (
            top_classes(inputs, next(iter(outputs.values())), contract, args.top)
            if (inputs.labels is not None and next(iter(outputs.values())).ndim == 2)
            else []
        )
    else:
        predictions = top_classes(inputs, next(iter(outputs.values())), contract, args.top)
        width = max(len(p.input) for p in predictions)
        for p in predictions:
            top = "  ".join(f"{name} {prob:6.2%}" for name, prob in p.top)
            mark = "" if p.label is None else ("  (ok)" if p.correct else f"  (label {p.label})")
            print(f"{p.input.ljust(width)}  {top}{mark}")
    labelled = [p for p in predictions if p.label is not None]
    if labelled:
        right = sum(p.correct for p in labelled)
        print(f"top-1 accuracy {right / len(labelled):.2%} ({right:,} of {len(labelled):,} labelled samples)")
    return 0


def cmd_graph(args) -> int:
    from cnndsl.files import write_atomic
    from cnndsl.tools.diagram import diagram, output_path, render_diagram

    model = load(
        args.file, network=args.network, defines=dict(args.defines), input=args.input, max_layers=args.max_layers
    )
    _print_diagnostics(model.warnings)
    out = output_path(args.output, model.name, args.file)
    d = diagram(model, args.depth)
    data = render_diagram(d, out.suffix.lower() or ".svg")
    write_atomic(out, lambda f: f.write(data))
    size = len(data)
    depth = "all blocks expanded" if args.depth is None else f"blocks below depth {args.depth} collapsed"
    print(
        f"wrote {out} ({size:,} bytes): network {model.name}, {len(d.boxes)} node{'s' if len(d.boxes) != 1 else ''}, "
        f"{len(d.edges)} edge{'s' if len(d.edges) != 1 else ''}, {depth}"
    )
    return 0


def cmd_import(args) -> int:
    from pathlib import Path

    from cnndsl.files import refuse_overwrite, write_atomic
    from cnndsl.importers.convert import import_file

    out = Path(args.output)
    refuse_overwrite("-o", out, args.file)
    shape = None
    if args.input is not None:
        parts = args.input.lower().split("x")
        if not all(p.isdigit() and int(p) > 0 for p in parts) or len(parts) < 2:
            raise CnnError(f"--input {args.input}: expected CxHxW like 3x224x224", code="E240")
        shape = tuple(int(p) for p in parts)
    warnings: list = []
    text = import_file(args.file, args.name, shape, warnings)
    _print_diagnostics(warnings)
    # the written file compiles: checked before anything is written; a problem the source itself has
    # (a kernel larger than its input ...) is reported on the converted line, named as the output file
    from cnndsl.lang.modules import Loader

    try:
        model = run_deep(lambda: compile_network(Loader().load_text(text, str(out)), None, {}))
    except CnnError as err:
        err.add_note(f"in the text converted from {args.file}, not written; the comment names the source layer")
        raise
    from cnndsl.tools.fmt import format_text

    text = run_deep(lambda: format_text(text, str(out)))  # the canonical layout (cnndsl fmt --check passes)
    write_atomic(out, lambda f: f.write(text.encode("utf-8")))
    print(
        f"wrote {out}: network {model.name}, {len(model.layers)} layers, {model.totals.params:,} parameters, "
        f"{model.totals.macs:,} MACs"
    )
    return 0


def cmd_check(args) -> int:
    from cnndsl.files import net_files

    args.files = [str(p) for p in net_files(args.files, "cnndsl check")]  # a folder: the .net files under it
    diags: list[Diagnostic] = []
    files: list[str] = []  # the file each diagnostic is about, for those without a position
    given = dict(args.defines)
    known: set = set()  # parameters of the networks checked, to catch a misspelt -D
    all_loaded = True
    for i, path in enumerate(args.files):
        files.extend(args.files[i - 1 : i] * (len(diags) - len(files)))  # the previous file's diagnostics
        try:
            module = run_deep(lambda path=path: load_module(path))
        except CnnError as err:
            diags.append(err.diagnostic)
            all_loaded = False
            continue
        for name in [args.network] if args.network else list(module.networks):
            definition = module.networks.get(name)
            params = [p.name for p in definition.node.params] if definition else []
            known.update(params)
            needs = (
                [p.name for p in definition.node.params if p.default is None and p.name not in given]
                if definition
                else []
            )
            if needs:
                diags.append(
                    Diagnostic(
                        "note", f"network {name} not checked: give -D {needs[0]}=...", definition.node.span, code="N200"
                    )
                )
                continue
            # -D applies to the networks that have that parameter
            defines = {k: v for k, v in given.items() if definition is None or k in params}
            try:
                model = run_deep(
                    lambda m=module, n=name, d=defines: compile_network(m, n, d, args.input, args.max_layers)
                )
                diags.extend(model.warnings)
            except CnnError as err:
                diags.append(err.diagnostic)
    if all_loaded:
        from cnndsl.errors import did_you_mean

        for name in given:
            if name not in known:
                diags.append(
                    Diagnostic(
                        "error",
                        f"-D {name}: no network checked has a parameter '{name}'{did_you_mean(name, known)}",
                        None,
                        [],
                        "E052",
                    )
                )
    errors = sum(d.severity == "error" for d in diags)
    warnings = sum(d.severity == "warning" for d in diags)
    files.extend([args.files[-1]] * (len(diags) - len(files)))
    if args.format == "json":
        import json

        out = [d.to_json() for d in diags]
        for d, path in zip(out, files):
            d["file"] = d["file"] or path  # a file that cannot be read: no position, but the file
        print(json.dumps(out, indent=2))
    else:
        _print_diagnostics(diags)
        print(
            f"checked {len(args.files)} file{'s' if len(args.files) != 1 else ''}: "
            f"{errors} error{'s' if errors != 1 else ''}, {warnings} warning{'s' if warnings != 1 else ''}"
        )
    return 1 if errors else 0


def cmd_fmt(args) -> int:
    from cnndsl.tools.fmt import format_paths

    return format_paths(args.files, args.check, lambda d: _print_diagnostics([d]))


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    args = build_parser(command if command in COMMANDS else None).parse_args(argv)
    if args.run in (cmd_info, cmd_check):
        # these print and end: the collection at the interpreter's exit would walk every object
        # (the model, the parse tables) to free nothing that the exit does not free anyway;
        # frozen, it does not (8 ms of `cnndsl info` on ResNet-152). They write no file.
        atexit.register(gc.freeze)
    try:
        code = args.run(args)
    except CnnError as err:
        print(err.diagnostic.format(show_code=True), file=sys.stderr)
        code = 1
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 0
    except KeyboardInterrupt:
        print("cnndsl: interrupted", file=sys.stderr)
        code = 130
    except Exception as err:  # a bug: say so plainly instead of a traceback
        print(
            f"cnndsl: internal error (a bug in cnndsl {__version__}, please report it with the input): "
            f"{type(err).__name__}: {err}",
            file=sys.stderr,
        )
        if os.environ.get("CNNDSL_DEBUG"):
            raise
        code = 3
    if args.run is cmd_train and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        # a rank of a data-parallel run: its files are written and closed, the ranks met at the
        # end; it leaves without freeing DDP and gloo's process group (their destructors can
        # deadlock on the GIL: cnndsl/train/torch_engine.py, _ENDED) and without the
        # interpreter's finalisation, where gloo's threads can hold the exit (pytorch/pytorch#75097)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
