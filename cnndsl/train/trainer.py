"""``cnndsl train``: drive the train-step graph with onnxruntime.

Parameters, momentum buffers and BN statistics stay on the device between steps
(I/O binding: each step's ``.new`` outputs are bound as the next step's inputs);
only the batch goes in and the loss and logits come out. Every epoch the
held-out split is evaluated through the inference export with the current
weights, and the weights are written atomically to ``--out`` (a ``.npz`` that
``cnndsl export --weights`` reads).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cnndsl.errors import CnnError
from cnndsl.files import write_atomic


@dataclass
class Epoch:
    number: int
    loss: float
    train_accuracy: float | None
    held_out_accuracy: float | None
    held_out_loss: float | None
    samples_per_second: float
    seconds: float
    held_out_miou: float | None = None  # per-pixel labels: the held-out mean IoU (:func:`mean_iou`)


@dataclass
class Result:
    epochs: list[Epoch] = field(default_factory=list)
    provider: str = ""
    weights: dict = field(default_factory=dict)
    predictions: np.ndarray | None = None  # held-out predictions of the last evaluation
    first_epoch: int = 1  # where this run started (later than 1 when resumed)
    interrupted: tuple[int, int, int] | None = None  # (epoch, batches done, batches per epoch) when stopped
    best: Epoch | None = None  # the epoch with the best held-out figures (``train(best=PATH)``)


def predicted_classes(meaning: str, outputs: np.ndarray) -> np.ndarray:
    """Class per sample (and position): the nearest centre for ``distances`` (rbf), else the
    largest score or probability (``meaning``: :func:`cnndsl.train.step.output_meaning`)."""
    return outputs.argmin(1) if meaning == "distances" else outputs.argmax(1)


def better(epoch: Epoch, best: Epoch | None) -> bool:
    """Whether ``epoch`` beats ``best``: a higher held-out mean IoU (per-pixel labels), else a
    higher held-out accuracy, or (without one: mse) a lower held-out loss; a tie keeps the
    earlier epoch."""
    if best is None:
        return True
    if epoch.held_out_miou is not None and best.held_out_miou is not None:
        return epoch.held_out_miou > best.held_out_miou
    if epoch.held_out_accuracy is not None and best.held_out_accuracy is not None:
        return epoch.held_out_accuracy > best.held_out_accuracy
    return (
        epoch.held_out_loss is not None and best.held_out_loss is not None and epoch.held_out_loss < best.held_out_loss
    )


def confusion(pred: np.ndarray, y: np.ndarray, classes: int, ignore_index: int | None = None) -> np.ndarray:
    """The confusion matrix (classes, classes) int64 of a split: ``[label, predicted]`` counts over
    every position whose label is not ``ignore_index``."""
    keep = (y != ignore_index) if ignore_index is not None else np.ones(y.shape, bool)
    pairs = y[keep].astype(np.int64) * classes + pred[keep].astype(np.int64)
    return np.bincount(pairs, minlength=classes * classes).reshape(classes, classes)


def mean_iou(matrix: np.ndarray) -> tuple[float, float]:
    """(pixel accuracy, mean IoU) of a confusion matrix ``[label, predicted]`` (Long et al. 2015,
    "Fully convolutional networks for semantic segmentation", section 5: pixel accuracy
    Σ n_ii / Σ t_i, mean IU (1/n_cl) Σ n_ii / (t_i + Σ_j n_ji − n_ii)), the mean over the classes
    that occur in the labels or the predictions (a class in neither has no IoU: mmsegmentation's
    and torchmetrics' convention, the NaN left out)."""
    tp = np.diag(matrix).astype(np.float64)
    union = matrix.sum(0) + matrix.sum(1) - tp
    present = union > 0
    total = matrix.sum()
    accuracy = float(tp.sum() / total) if total else 0.0
    return accuracy, float((tp[present] / union[present]).mean()) if present.any() else 0.0


def save_weights(weights: dict, path: Path) -> None:
    """The weights as an .npz, written atomically (cnndsl.files)."""
    write_atomic(path, lambda f: np.savez(f, **weights))


class Trainer:
    """One network's training session on onnxruntime."""

    def __init__(
        self,
        model,
        loss=None,
        lr=0.01,
        momentum=0.9,
        weight_decay=0.0,
        seed=0,
        weights=None,
        provider="auto",
        optimizer=None,
        label_smoothing=0.0,
        freeze=(),
        reset=(),
        partial=False,
        ignore_index=None,
    ):
        from onnx import numpy_helper

        from cnndsl.lower.session import make_session, providers_for
        from cnndsl.train.step import default_loss, output_meaning, train_graph

        self.model = model
        self.loss = default_loss(model) if loss is None else loss
        self.lr = lr
        self.output = output_meaning(model)  # scores, distances or probabilities
        self.ignore_index = ignore_index
        self.tuning = {}  # the names initialised from the seed and the frozen ones (fine-tuning)
        proto, params = train_graph(
            model,
            loss=self.loss,
            lr=lr,
            momentum=momentum,
            weight_decay=weight_decay,
            seed=seed,
            weights=weights,
            optimizer=optimizer,
            label_smoothing=label_smoothing,
            freeze=freeze,
            reset=reset,
            partial=partial,
            tuning=self.tuning,
            ignore_index=ignore_index,
        )
        self.session, self.nchwc = None, 0  # nchwc: the Conv on onnxruntime's blocked kernels (train/nchwc.py)
        if providers_for(provider)[0] == "CPUExecutionProvider":
            from cnndsl.train.nchwc import cpu_form

            form, count = cpu_form(proto)
            if count:
                try:
                    self.session, self.provider = make_session(form.SerializeToString(), provider)
                    self.nchwc = count
                except CnnError:  # an optimisation only: the standard graph below says what is wrong, if anything
                    pass
        if self.session is None:
            self.session, self.provider = make_session(proto.SerializeToString(), provider)
        inputs = {i.name for i in proto.graph.input}
        # state: every parameter, momentum buffer and running statistic (graph inputs with values)
        self.state_names = [t.name for t in proto.graph.initializer if t.name in inputs and t.name != "lr"]
        self.fixed = {
            t.name: numpy_helper.to_array(t)
            for t in proto.graph.initializer
            if t.name not in inputs and t.name in params
        }  # rbf centres, fixed deconvolutions
        import onnxruntime as ort

        self.device = "cuda" if self.provider == "CUDAExecutionProvider" else "cpu"
        self.state = {
            t.name: ort.OrtValue.ortvalue_from_numpy(numpy_helper.to_array(t), self.device, 0)
            for t in proto.graph.initializer
            if t.name in self.state_names
        }
        self.outputs = [o.name for o in proto.graph.output]
        self.binding = self.session.io_binding()
        self.set_lr(lr)
        self.dtype = np.float32

    def set_lr(self, lr: float) -> None:
        """The learning rate of the following steps (the graph's ``lr`` input)."""
        import onnxruntime as ort

        self.lr = lr
        self.lr_value = ort.OrtValue.ortvalue_from_numpy(np.array(lr, np.float32))

    def step(self, x: np.ndarray, y: np.ndarray):
        """One SGD step; returns (loss, logits) on the host."""
        io = self.binding
        io.bind_cpu_input("x", np.ascontiguousarray(x, self.dtype))
        io.bind_cpu_input("y", np.ascontiguousarray(y))
        # (bind_cpu_input only knows true graph inputs; lr, like the state, has a default)
        io.bind_ortvalue_input("lr", self.lr_value)
        for name in self.state_names:
            io.bind_ortvalue_input(name, self.state[name])
        for name in self.outputs:
            io.bind_output(name, self.device)
        self.session.run_with_iobinding(io)
        outs = io.get_outputs()
        for name, value in zip(self.outputs, outs):
            if name.endswith(".new"):
                self.state[name[:-4]] = value
        return float(outs[0].numpy()), outs[1].numpy()

    def weights(self) -> dict:
        """The inference model's weights by name (parameters, running statistics, fixed ones)."""
        return {n: v for n, v in self.checkpoint().items() if not n.endswith(".momentum")}

    def checkpoint(self) -> dict:
        """The weights and the momentum buffers (``<param>.momentum``), so that --resume goes on exactly."""
        out = {n: v.numpy() for n, v in self.state.items()}
        out.update(self.fixed)
        return out

    def evaluate(self, x: np.ndarray, y: np.ndarray, batch: int):
        """Held-out (loss, accuracy, predictions) through the inference export."""
        from cnndsl.lower.export import to_onnx
        from cnndsl.lower.session import make_session

        sess, _ = make_session(
            to_onnx(self.model, weights=self.weights()).SerializeToString(), "cuda" if self.device == "cuda" else "cpu"
        )
        name = sess.get_inputs()[0].name
        outs = np.concatenate(
            [sess.run(None, {name: x[i : i + batch].astype(self.dtype)})[0] for i in range(0, len(x), batch)]
        )
        from cnndsl.train.step import held_out_figures

        return held_out_figures(self.loss, self.output, outs, y, self.ignore_index)


class EpochTable:
    """The epoch lines of ``cnndsl train``: a header, then one row per epoch, within 80 columns.

    >>> t = EpochTable(15, accuracy=True, held_out=True)
    >>> print(t.header()); print(t.row(Epoch(3, 0.41234, 0.8749, 0.9, 0.3512, 12345.6, 1.24)))
    epoch     loss     acc   held-out loss     acc   samples/s     time
     3/15   0.4123  87.49%          0.3512  90.00%      12,346     1.2s
    """

    def __init__(self, epochs: int, accuracy: bool, held_out: bool, miou: bool = False):
        self.width = max(5, 2 * len(str(epochs)) + 1)
        self.epochs, self.accuracy, self.held_out = epochs, accuracy, held_out
        self.miou = miou and held_out  # per-pixel labels: the held-out mean IoU after its pixel accuracy

    def columns(self) -> list:
        """The table's columns in order: (title, width, the cell of an epoch); header and row
        both read them."""
        cols = [("loss", 8, lambda e: f"{e.loss:.4f}")]
        if self.accuracy:
            cols.append(("acc", 7, lambda e: f"{e.train_accuracy:.2%}"))
        if self.held_out:
            cols.append(("held-out loss", 15, lambda e: f"{e.held_out_loss:.4f}"))
            if self.accuracy:
                cols.append(("acc", 7, lambda e: f"{e.held_out_accuracy:.2%}"))
            if self.miou:
                cols.append(("mIoU", 7, lambda e: f"{e.held_out_miou:.2%}"))
        cols += [
            ("samples/s", 11, lambda e: f"{e.samples_per_second:,.0f}"),
            ("time", 8, lambda e: f"{e.seconds:.1f}s"),
        ]
        return cols

    def header(self) -> str:
        return " ".join([f"{'epoch':<{self.width}}", *(f"{title:>{w}}" for title, w, _ in self.columns())])

    def row(self, e: Epoch) -> str:
        first = f"{f'{e.number}/{self.epochs}':>{self.width}}"
        return " ".join([first, *(f"{cell(e):>{w}}" for _, w, cell in self.columns())])


def labels_for(model, y: np.ndarray) -> np.ndarray:
    """Class labels shaped like the network's output without its class axis: per sample (N, 1, 1
    for a 1x1 map), or per position (N, H, W) as they are."""
    out = model.graph.nodes[model.graph.outputs[0][1]].shape
    if y.ndim > 1 and len(out) > 1 and tuple(y.shape[1:]) == tuple(out[1:]):
        return y.astype(np.int64)
    if y.ndim > 1:
        raise CnnError(
            f"the labels have shape {y.shape}; per-position labels for the network's output "
            f"{'x'.join(map(str, out))} must be (N, {', '.join(map(str, out[1:]))})",
            code="E105",
        )
    if len(out) > 1:
        if any(d != 1 for d in out[1:]):
            size = ", ".join(map(str, out[1:]))
            raise CnnError(
                f"the network's output is {'x'.join(map(str, out))}: a class per position, but --data gives "
                f"one label per sample; give labels per pixel: y (N, {size}) in a .npz, or --masks (docs/data.md)",
                code="E086",
            )
        y = y.reshape(len(y), *[1] * (len(out) - 1))
    return y.astype(np.int64)


@dataclass
class Resumed:
    """Where a checkpoint's training stopped (its ``train:`` arrays)."""

    epochs_done: int  # complete epochs
    batches_done: int  # batches of the next epoch already taken (an interrupted epoch)
    steps_done: int  # steps in all: the schedule's position
    rng: dict  # the shuffling generator's state at the start of the next epoch
    seed: int
    augment: str = ""  # the run's --augment (Augment.spec()), "" without


def training_state(checkpoint: dict | None) -> Resumed | None:
    """The training state a checkpoint holds, or None (plain weights, or a checkpoint written
    before cnndsl saved it)."""
    import json

    if checkpoint is None or "train:epochs_done" not in checkpoint:
        return None
    try:
        return Resumed(
            int(checkpoint["train:epochs_done"]),
            int(checkpoint["train:batches_done"]),
            int(checkpoint["train:steps_done"]),
            json.loads(str(checkpoint["train:rng"])),
            int(checkpoint["train:seed"]),
            str(checkpoint["train:augment"]) if "train:augment" in checkpoint else "",
        )
    except (KeyError, ValueError, TypeError) as err:
        raise CnnError(f"--resume: the checkpoint's training state is damaged ({err})", code="E082") from None


def _state_arrays(epochs_done, batches_done, steps_done, rng_state, seed, augment=None) -> dict:
    import json

    return ({"train:augment": np.array(augment.spec())} if augment is not None else {}) | {
        "train:epochs_done": np.array(epochs_done, np.int64),
        "train:batches_done": np.array(batches_done, np.int64),
        "train:steps_done": np.array(steps_done, np.int64),
        "train:rng": np.array(json.dumps(rng_state)),
        "train:seed": np.array(seed, np.int64),
    }


def train(
    model,
    train_data,
    held_out,
    epochs=10,
    batch=64,
    lr=0.001,
    momentum=0.9,
    weight_decay=0.0,
    provider="auto",
    seed=0,
    out=None,
    resume=None,
    report=None,
    progress=None,
    loss=None,
    schedule="constant",
    optimizer=None,
    warmup=0.0,
    label_smoothing=0.0,
    should_stop=None,
    weights=None,
    freeze=(),
    reset=(),
    ready=None,
    best=None,
    metadata=None,
    interrupted_out=None,
    augment=None,
    engine="onnxruntime",
    device="cpu",
    ignore_index=None,
) -> Result:
    """Train up to epoch ``epochs``; ``report(epoch)`` after each, ``progress(done, total, loss,
    epoch)`` per step. ``resume`` (a checkpoint) goes on where it stopped: its epoch, batch,
    schedule position and shuffling; ``should_stop()`` is asked after every step, and when it
    says so the checkpoint is written there and ``Result.interrupted`` says where. Fine-tuning:
    ``weights`` (may hold a subset of the parameters; the rest from the seed), ``freeze`` and
    ``reset`` (name prefixes, :func:`cnndsl.train.step.train_graph`); ``ready(trainer)`` is
    called once the session is built (``trainer.tuning`` lists what was initialised and frozen).
    ``out``: the checkpoint of the last epoch; ``best``: the checkpoint of the epoch with the best
    held-out figures (:func:`better`); ``interrupted_out``: where a stop is saved when there is no
    ``out`` (``--keep best``); ``metadata``: more entries for every checkpoint (cnndsl.train.contract); ``augment``: a
    :class:`cnndsl.train.data.Augment` for the training batches (drawn from the shuffling generator
    after each epoch's permutation, :func:`cnndsl.train.data.augment`). ``engine``:
    ``onnxruntime`` (``provider``) or ``torch`` (:mod:`cnndsl.train.torch_engine`, on
    ``device``; data-parallel under ``--nproc`` or ``torch.distributed.run``). ``ignore_index``: the label of
    unlabelled positions (:func:`cnndsl.train.step.train_graph`); with per-pixel labels (N, H, W)
    the epochs report pixel accuracy and the held-out mean IoU (:func:`mean_iou`), which picks
    the best epoch."""
    from cnndsl.lower.builder import training_state as optimizer_state

    state = training_state(resume)
    given = augment.spec() if augment is not None else ""
    if state is not None and state.augment != given:
        was = f"--augment {state.augment}" if state.augment else "no --augment"
        now = f"--augment {given}" if given else "none"
        raise CnnError(
            f"--resume: the checkpoint was trained with {was}; resume with the same (given: {now})", code="E084"
        )
    options = dict(
        loss=loss,
        lr=lr,
        momentum=momentum,
        weight_decay=weight_decay,
        seed=seed,
        weights=resume
        if weights is None
        else {k: v for k, v in weights.items() if not optimizer_state(k, weights)},  # a fresh optimizer
        optimizer=optimizer,
        label_smoothing=label_smoothing,
        freeze=freeze,
        reset=reset,
        partial=weights is not None,
        ignore_index=ignore_index,
    )
    if engine == "torch":
        from cnndsl.train.torch_engine import TorchTrainer

        trainer = TorchTrainer(model, device=device, **options)
    else:
        trainer = Trainer(model, provider=provider, **options)
    try:
        return _loop(
            trainer, model, train_data, held_out, epochs, batch, lr, seed, out, state, report, progress, schedule,
            warmup, should_stop, ready, best, metadata, interrupted_out, augment,
        )  # fmt: skip
    finally:
        if hasattr(trainer, "close"):
            trainer.close()


def _loop(
    trainer, model, train_data, held_out, epochs, batch, lr, seed, out, state, report, progress, schedule, warmup,
    should_stop, ready, best, metadata, interrupted_out, augment,
) -> Result:  # fmt: skip
    """The epochs of :func:`train` on one engine's ``trainer``."""
    from cnndsl.train.optim import learning_rate

    writes = getattr(trainer, "writes", True)  # rank 0 of a data-parallel run, or the only process
    agree = getattr(trainer, "agree", bool)
    if not writes:  # checkpoints are rank 0's (every rank evaluates: the same weights, the same figures)
        out, best, interrupted_out = None, None, None
    stop = (lambda: agree(should_stop())) if should_stop is not None else None
    if ready:
        ready(trainer)
    result = Result(provider=trainer.provider)
    x, y = train_data.x, labels_for(model, train_data.y)
    dense = train_data.y.ndim > 1 and trainer.loss != "mse"  # a class per position: pixel accuracy, mean IoU
    ignore = getattr(trainer, "ignore_index", None)
    if dense and augment is not None:
        raise CnnError(
            "--augment flips and crops the images but not yet their per-pixel labels; train without it", code="E084"
        )
    classes = model.graph.nodes[model.graph.outputs[0][1]].shape[0]
    rng = np.random.default_rng(seed)
    per_epoch = len([i for i in range(0, len(x), batch) if len(x) - i > 1])  # a batch of one is skipped
    total_steps, warm = per_epoch * epochs, round(warmup * per_epoch)
    first_epoch, skip, step_no = 1, 0, 0
    if state is not None:
        rng.bit_generator.state = state.rng
        first_epoch, skip, step_no = state.epochs_done + 1, state.batches_done, state.steps_done
    result.first_epoch = first_epoch
    for epoch in range(first_epoch, epochs + 1):
        start_state = rng.bit_generator.state
        order = rng.permutation(len(x))
        if augment is not None:  # the epoch's draws, all of them, so that a resumed epoch gets the same
            from cnndsl.train.data import augment as draw

            transform = draw(augment, len(order), rng)
        start = time.perf_counter()
        total, correct, seen, labelled = 0.0, 0, 0, 0  # labelled: the labels the loss averages over
        steps = [np.arange(i, min(i + batch, len(order))) for i in range(0, len(order), batch)]
        steps = [s for s in steps if len(s) > 1]  # a batch of one has no batch statistics
        for k, at in enumerate(steps, 1):  # at: positions in the epoch's order
            if k <= skip:  # taken before the interruption
                continue
            idx = order[at]
            trainer.set_lr(learning_rate(lr, schedule, step_no, total_steps, warm))
            xb = x[idx] if augment is None else transform(x[idx], at)
            yb = y[idx]
            loss, logits = trainer.step(xb, yb)
            step_no += 1
            if not np.isfinite(loss):
                raise CnnError(
                    f"epoch {epoch}: the loss became {loss}; try a smaller --lr (now {trainer.lr:.3g})", code="E087"
                )
            keep = (yb != ignore) if ignore is not None and trainer.loss != "mse" else None
            count = len(idx) if trainer.loss == "mse" else (int(keep.sum()) if keep is not None else yb.size)
            total += loss * count  # the batch's loss is the mean over its labels (pixels)
            if trainer.loss != "mse":  # the logits' largest score (rbf: −distance)
                hits = logits.argmax(1) == yb
                correct += int(hits[keep].sum() if keep is not None else hits.sum())
            seen += len(idx)
            labelled += count
            if progress:
                progress(k, len(steps), total / max(labelled, 1), epoch)
            if stop is not None and stop() and k < len(steps):
                result.weights = trainer.weights()
                result.interrupted = (epoch, k, len(steps))
                target = out if out is not None else interrupted_out
                if target is not None:
                    state = _state_arrays(epoch - 1, k, step_no, start_state, seed, augment)
                    save_weights({**trainer.checkpoint(), **state, **(metadata or {})}, target)
                return result
        skip = 0
        seconds = time.perf_counter() - start
        h_y = labels_for(model, held_out.y) if held_out is not None and len(held_out.x) else None
        h_loss, h_acc, pred = trainer.evaluate(held_out.x, h_y, batch) if h_y is not None else (None, None, None)
        h_miou = mean_iou(confusion(pred, h_y, classes, ignore))[1] if dense and h_y is not None else None
        accuracy = correct / max(labelled, 1) if trainer.loss != "mse" else None
        record = Epoch(
            epoch, total / max(labelled, 1), accuracy, h_acc, h_loss, seen / max(seconds, 1e-9), seconds, h_miou
        )
        result.epochs.append(record)
        result.predictions = pred
        result.weights = trainer.weights()
        if out is not None:
            state = _state_arrays(epoch, 0, step_no, rng.bit_generator.state, seed, augment)
            save_weights({**trainer.checkpoint(), **state, **(metadata or {})}, out)
        if best is not None and held_out is not None and better(record, result.best):
            result.best = record
            state = _state_arrays(epoch, 0, step_no, rng.bit_generator.state, seed, augment)
            save_weights({**trainer.checkpoint(), **state, **(metadata or {})}, best)
        if report:
            report(record)
        if stop is not None and stop() and epoch < epochs:
            result.interrupted = (epoch + 1, 0, per_epoch)
            if out is None and interrupted_out is not None:
                state = _state_arrays(epoch, 0, step_no, rng.bit_generator.state, seed, augment)
                save_weights({**trainer.checkpoint(), **state, **(metadata or {})}, interrupted_out)
            return result
    return result


def progress_bar(stream=None):
    """A rich progress bar per epoch on a terminal; nothing when piped."""
    stream = sys.stderr if stream is None else stream  # the stream of the call, not of the import
    if not stream.isatty():
        return None, lambda: None
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    prog = Progress(
        TextColumn("epoch {task.fields[epoch]}"),
        BarColumn(),
        TextColumn("loss {task.fields[loss]:.4f}"),
        TimeRemainingColumn(),
        console=Console(file=stream),
        transient=True,
        # the epoch lines (stdout) print above the bar when both are the terminal; piped, they
        # stay on stdout
        redirect_stdout=sys.stdout.isatty(),
        redirect_stderr=False,
    )
    tasks = {}

    def update(done, total, loss, epoch):
        if epoch not in tasks:
            if not tasks:
                prog.start()
            tasks[epoch] = prog.add_task("train", total=total, epoch=epoch, loss=loss)
        prog.update(tasks[epoch], completed=done, loss=loss)
        if done == total:
            prog.remove_task(tasks[epoch])

    return update, prog.stop
