"""The elaboration pass: a network definition to the IR, with every figure inferred.

Expansion and inference are one pass because arguments may depend on shapes
(``conv (in.c // 16)/1``, ``residual`` picking its shortcut from the body's
output). The pass owns traversal; layer kinds own the math. On failure it
re-raises with the span, the source text and the block-call chain.

    >>> from cnndsl import load
    >>> load("network n { input 3x32x32\\n conv 16/3 -> relu }").layers[1].output
    (16, 30, 30)
"""

from __future__ import annotations

from types import MappingProxyType

from cnndsl.errors import CnnError, Diagnostic, Span, did_you_mean, source_text
from cnndsl.ir.arguments import bind_arguments, resolve
from cnndsl.ir.graph import Graph, Node
from cnndsl.ir.labels import Labels
from cnndsl.ir.scope import Env, ExprNames, Scope
from cnndsl.lang import tree as ast
from cnndsl.lang.modules import Definition, with_default
from cnndsl.lang.values import INT_LIMIT, check_new_name, evaluate
from cnndsl.layers import CATALOGUE, PUBLIC, LayerError, Symbol, ValueRef, suggest_kind
from cnndsl.layers.arith import fmt_shape, prod
from cnndsl.layers.base import describe

MAX_LAYERS = 1_000_000  # unrolled layers per network (overridable: load(max_layers=...))
MAX_DEPTH = 10_000  # nested blocks, groups, branches and repeats


class Elaborator:
    """The pass: walks a network definition in order, calls each kind's rules and builds the
    IR; labels and outputs are kept by :class:`~cnndsl.ir.labels.Labels`."""

    def __init__(self, max_layers: int = MAX_LAYERS):
        self.max_layers = max_layers
        self.nodes: list[Node] = []
        self.warnings: list[Diagnostic] = []
        self.labels = Labels()
        self.params_total = 0
        # (kind, arguments, input shape) -> what the kind's rules give: a layer repeated with the
        # same arguments on the same input (ResNet-152's 50 bottlenecks: 514 layers, 50 distinct)
        # is worked out once; the rules are functions of the arguments and the input shape
        self._figures: dict = {}

    # ------------------------------------------------------------------ network
    def network(self, d: Definition, defines: dict, input_shape: tuple | None) -> Graph:
        net = d.node
        scope = Scope(d.module, {}, "", (), net)
        env = Env(scope, None, d.defaults, 0)  # no in.c before the input: parameters decide the input
        self._bind_network_params(net, scope, env, defines)
        body = list(net.body)
        while body and isinstance(body[0], (ast.Default, ast.Let)):
            st = body.pop(0)
            env = self._default(st, env) if isinstance(st, ast.Default) else self._let(st, env)
        if not body or not isinstance(body[0], ast.Input):
            where = body[0].span if body else net.span
            raise CnnError(
                f"network {net.name} must start with its input shape; expected input CxHxW (e.g. input 3x224x224)",
                where,
                code="E050",
            )
        inp = body.pop(0)
        shape = tuple(input_shape) if input_shape is not None else inp.shape
        if not 1 <= len(shape) <= 4 or any(v < 1 for v in shape):
            raise CnnError(
                f"input shape {fmt_shape(shape)} must be C, CxL, CxHxW or CxDxHxW with every size at least 1",
                inp.span,
                code="E051",
            )
        self._check_size(shape, inp.span)
        spatial = len(shape) - 1
        self._add(
            Node(
                0,
                "input",
                "input",
                MappingProxyType({}),
                (),
                shape,
                0,
                0,
                0,
                0,
                (1,) * spatial,
                (1,) * spatial,
                inp.span,
                (),
            )
        )
        scope.everywhere.add("input")
        env = Env(scope, shape, env.defaults, 0, env.lets)
        last = self.body(body, env, 0, network=True)
        self.warnings.extend(self.labels.unused())
        if self.labels.outputs:
            outputs = tuple((n, v) for n, v, _ in self.labels.outputs)
        else:
            outputs = (("output", last),)
        return Graph(
            net.name,
            d.module.path,
            shape,
            tuple(self.nodes),
            outputs,
            tuple(self.warnings),
            MappingProxyType(dict(scope.params)),
        )

    def _bind_network_params(self, net, scope, env, defines):
        names = [p.name for p in net.params]
        for name in defines:
            if name not in names:
                have = ", ".join(names) if names else "none"
                raise CnnError(
                    f"-D {name}: network {net.name} has no parameter '{name}'{did_you_mean(name, names)} "
                    f"(its parameters: {have})",
                    net.span,
                    code="E052",
                )
        for p in net.params:
            if p.name in defines:
                scope.params[p.name] = defines[p.name]
            elif p.default is not None:
                scope.params[p.name] = self._eval(p.default, env)
            else:
                raise CnnError(
                    f"network {net.name} needs a value for its parameter '{p.name}'; set it with -D {p.name}=...",
                    p.span,
                    code="E053",
                )

    # --------------------------------------------------------------- statements
    def body(self, stmts, env: Env, cur: int, network: bool = False) -> int:
        if env.depth > MAX_DEPTH:
            span = stmts[0].span if stmts else None
            raise CnnError(f"nesting deeper than {MAX_DEPTH} levels", span, code="E060")
        for st in stmts:
            t = type(st)
            if t is ast.Statement:
                cur = self.statement(st, env, cur)
            elif t is ast.Default:
                env = self._default(st, env)
            elif t is ast.Let:
                env = self._let(st, env)
            elif t is ast.Output:
                if not network or env.scope.prefix:
                    raise CnnError("output is only allowed in the body of a network", st.span, code="E054")
                self.labels.add_outputs(st, env)
            else:  # ast.Input
                msg = "input may appear only once, as the first statement of a network"
                raise CnnError(msg, st.span, code="E055")
        return cur

    def statement(self, st: ast.Statement, env: Env, cur: int) -> int:
        """A chain. A label names the value at the end of the chain, and the layers to its
        right are named after it: ``x: conv -> relu`` gives layers x and x.relu."""
        label = st.label
        named = False
        names_layer = False
        labels = [(st.label, st.label_span)] if label else []  # (label, span, names a layer)
        later = {i: (name, span) for i, name, span in st.inner_labels}
        for i, step in enumerate(st.steps):
            if i in later:
                if label:
                    labels[-1] = (*labels[-1][:2], names_layer)
                label, span = later[i]
                labels.append((label, span))
                named = names_layer = False
            if type(step) is ast.Ref:
                if i:
                    raise CnnError(
                        f"@{step.name} can only start a chain; to continue from it, start a new line with @{step.name}",
                        step.span,
                        code="E021",
                    )
                cur = self.labels.value(step.name, step.span, env)
                continue
            hint = None
            if label:
                inner = step.body[0] if type(step) is ast.Repeat and step.is_step else step
                hint = label if not named else f"{label}.{inner.kind}" if type(inner) is ast.Call else None
                named = True
                names_layer = names_layer or type(inner) is ast.Call
            cur = self.step(step, env, cur, hint)
        if label:
            labels[-1] = (*labels[-1][:2], names_layer)
        for name, span, named_layer in labels:
            self.labels.bind(name, cur, span, env, named_layer)
        return cur

    def step(self, step, env: Env, cur: int, hint: str | None) -> int:
        t = type(step)
        if t is ast.Call:
            return self.call(step, env, cur, hint)
        if t is ast.Identity:
            return cur
        if t is ast.Group:
            return self.body(step.body, env.nested(), cur)
        if t is ast.If:
            for cond, body in step.branches:
                value = self._eval(cond, env)
                if not isinstance(value, bool):
                    shown = value.name if isinstance(value, Symbol) else describe(value)
                    message = f"the condition of if must be true or false; received {shown} (compare it: x != 0)"
                    raise CnnError(message, cond.span, code="E034")
                if value:
                    return self.body(body, env.nested(), cur)
            return cur if step.orelse is None else self.body(step.orelse, env.nested(), cur)
        if t is ast.Repeat:
            n = self._eval(step.count, env)
            if isinstance(n, bool) or not isinstance(n, int) or n < 0:
                why = " (a condition: write if ... { })" if isinstance(n, bool) else ""
                raise CnnError(
                    f"a repeat count must be an integer of at least 0; received {describe(n)}{why}",
                    step.count.span,
                    code="E061",
                )
            if n > self.max_layers:
                raise CnnError(
                    f"repeat count {n:,} exceeds the limit of {self.max_layers:,} layers", step.count.span, code="E062"
                )
            inner = env.nested()
            if step.var is not None:
                check_new_name(step.var, step.var_span, inner.lets, env.scope.params)
            for i in range(n):
                before = len(self.nodes)
                if step.is_step:
                    cur = self.step(step.body[0], inner, cur, hint)
                else:
                    cur = self.body(step.body, inner if step.var is None else inner.bind(step.var, i), cur)
                if len(self.nodes) == before and step.var is None:
                    # The body adds no layer (`_`, an empty group): every further round would
                    # do exactly the same, so stop here rather than spin (repeat 10**6 { repeat 10**6 { _ } }).
                    break
            return cur
        raise AssertionError(step)  # pragma: no cover

    # -------------------------------------------------------------------- calls
    def call(self, c: ast.Call, env: Env, cur: int, hint: str | None) -> int:
        invoked = self._invoked(c, env)
        kind = PUBLIC.get(invoked)
        if kind is None:
            block = env.scope.module.blocks.get(invoked)
            if block is not None:
                return self.block_call(c, block, env, cur, hint)
            choices = list(PUBLIC) + list(env.scope.module.blocks) + self._kind_names(env)
            raise CnnError(
                f"unknown layer kind or block '{c.kind}'{suggest_kind(c.kind, choices)}", c.kind_span, code="E010"
            )
        if kind.combinator:
            return self.combinator(c, kind, env, cur, hint)
        if c.body is not None:
            raise CnnError(
                f"{c.kind} does not take a {{ body }}; only add, concat, mul and residual do", c.span, code="E012"
            )
        x = self.nodes[cur].shape
        a, spans = bind_arguments(c, kind, env, x, self._eval)
        return self.layer(kind, a, (cur,), c.span, env, hint or kind.name, spans)

    def _invoked(self, c: ast.Call, env: Env) -> str:
        """The kind or block a step invokes: its name, or what a parameter of that name holds
        (``act`` with ``act = hardswish``). A parameter holding a number leaves the name to
        the layer kind of that name (``dropout dropout``)."""
        if c.kind not in env.lets and c.kind not in env.scope.params:
            return c.kind  # only parameters and lets hold kinds (the file's names are tables and functions)
        held = ExprNames(env)(c.kind)
        if not isinstance(held, Symbol) or held.name == c.kind:
            return c.kind
        if held.name in PUBLIC or held.name in env.scope.module.blocks:
            return held.name
        raise CnnError(f"'{c.kind}' holds '{held.name}', which is not a layer kind or block", c.kind_span, code="E010")

    @staticmethod
    def _kind_names(env: Env) -> list[str]:
        """Parameters and lets holding a layer kind or block: they can be invoked too."""
        names = ExprNames(env)
        return [n for n in (*env.lets, *env.scope.params) if isinstance(names(n), Symbol)]

    def _let(self, st: ast.Let, env: Env) -> Env:
        check_new_name(st.name, st.name_span, env.lets, env.scope.params)
        return env.bind(st.name, self._eval(st.value, env))

    def layer(self, kind, a: dict, inputs: tuple, span: Span, env: Env, base: str, spans=None) -> int:
        x = self.nodes[inputs[0]].shape
        try:
            key = (kind, tuple((k, _typed(v)) for k, v in a.items()), x)
            figures = self._figures.get(key)
        except TypeError:  # an argument that cannot be a key (none of the kinds' canonical forms)
            key = figures = None
        if figures is None:
            try:
                a = MappingProxyType(kind.canonical(a, x))
                kind.check(a, x)
                y = kind.shape(a, x)
                figures = (a, y, kind.params(a, x, y), kind.macs(a, x, y), kind.connections(a, x, y))
                figures += (kind.window(a, x, y), tuple(kind.warnings(a, x, y)))
            except LayerError as err:
                raise self._layer_error(err, span, spans or {}, env) from None
            if key is not None:
                self._figures[key] = figures
        a, y, (trainable, fixed), macs, conns, window, warns = figures
        self._check_size(y, span, env)
        self._check_params(trainable + fixed, span, env)
        for message, arg in warns:
            where = (spans or {}).get(arg, span) if arg else span
            text = message.replace("{call}", source_text(span))
            self.warnings.append(Diagnostic("warning", text, where or span, self._call_notes(env), "W001"))
        name = env.scope.unique(base)
        return self._add_node(kind.name, name, a, inputs, y, trainable, fixed, macs, conns, window, span, env)

    # -------------------------------------------------------------- combinators
    def combinator(self, c: ast.Call, kind, env: Env, cur: int, hint: str | None) -> int:
        if c.body is None:
            raise CnnError(
                f"{c.kind} needs a {{ body }} of branches, e.g. {c.kind} {{ _ ; conv 64/3/1/1 }}", c.span, code="E012"
            )
        x = self.nodes[cur].shape
        a, spans = bind_arguments(c, kind, env, x, self._eval)
        name = env.scope.unique(hint or kind.name)
        inner = env.nested(x)
        if kind.derives_shortcut:
            body = self.body(c.body, inner, cur)
            try:
                made = kind.shortcut(a, x, self.nodes[body].shape)
            except LayerError as err:
                raise self._layer_error(err, c.span, {}, env) from None
            outs, labels = [self._insert(made, cur, c.span, inner), body], ["shortcut", "body"]
        else:
            outs, labels, inner = self._branches(c, inner, cur)
            adapters = kind.adapters(a, [self.nodes[o].shape for o in outs])
            outs = [self._insert(made, o, c.span, inner) for made, o in zip(adapters, outs)]
        try:
            y = kind.combine(a, [self.nodes[o].shape for o in outs], _Texts(labels))
        except LayerError as err:
            raise self._layer_error(err, c.span, {}, env) from None
        return self._add_node(kind.name, name, a, tuple(outs), y, 0, 0, 0, 0, None, c.span, env)

    def _branches(self, c: ast.Call, inner: Env, cur: int):
        """One value per statement of the body, each starting from ``cur``; ``default``
        statements apply to the branches after them."""
        outs, labels = [], []
        for st in c.body:
            if isinstance(st, ast.Default):
                inner = self._default(st, inner)
                continue
            if not isinstance(st, ast.Statement):
                what = "input" if isinstance(st, ast.Input) else "output"
                raise CnnError(f"{what} cannot be a branch", st.span, code="E055")
            outs.append(self.statement(st, inner, cur))
            labels.append(st.span)
        if not outs:
            raise CnnError(f"{c.kind} needs at least one branch", c.span, code="E012")
        return outs, labels, inner

    def _insert(self, layers, cur: int, span: Span, env: Env) -> int:
        """The layers a kind's rule asks for (a shortcut, a crop), each resolved as a call
        written at ``span`` would be (``default`` statements apply)."""
        for base, kind_name, values in layers:
            kind = CATALOGUE[kind_name]
            a, _ = resolve(kind, {k: (v, span) for k, v in values.items()}, env, self.nodes[cur].shape, span)
            cur = self.layer(kind, a, (cur,), span, env, base)
        return cur

    def block_call(self, c: ast.Call, d: Definition, env: Env, cur: int, hint: str | None) -> int:
        block = d.node
        if c.body is not None:
            raise CnnError(f"block {block.name} does not take a {{ body }}", c.span, code="E012")
        for _, span in c.stray:
            raise CnnError(
                f"unexpected field '{source_text(span)}'; block arguments go in parentheses", span, code="E013"
            )
        if len(env.scope.calls) >= MAX_DEPTH:
            raise CnnError(f"blocks nested deeper than {MAX_DEPTH} calls", c.span, code="E060")
        if any(s.definition is block for s in self._active_scopes(env)):
            active = [name for name, _ in env.scope.calls]
            cycle = " -> ".join(active[active.index(block.name) :] + [block.name])
            raise CnnError(
                f"block {block.name} calls itself: {cycle}", c.span, notes=self._call_notes(env), code="E063"
            )
        x = self.nodes[cur].shape
        signature = (
            f"{block.name}({', '.join(p.name if p.default is None else f'{p.name} = ...' for p in block.params)})"
        )
        bound: dict = {}
        names = [p.name for p in block.params]
        if len(c.positional) > len(names):
            raise CnnError(
                f"block {signature} takes {len(names)} argument{'s' if len(names) != 1 else ''}; "
                f"received {len(c.positional)}",
                c.positional[len(names)].span,
                code="E014",
            )
        for name, expr in zip(names, c.positional):
            bound[name] = self._eval(expr, env)
        for arg in c.keywords:
            if arg.name not in names:
                raise CnnError(
                    f"block {block.name} has no parameter '{arg.name}'{did_you_mean(arg.name, names)}",
                    arg.span,
                    code="E011",
                )
            if arg.name in bound:
                raise CnnError(f"{arg.name} is given twice", arg.span, code="E015")
            bound[arg.name] = True if arg.value is None else self._eval(arg.value, env)
        prefix_name = env.scope.unique(hint or block.name)
        scope = Scope(
            d.module,
            {},
            prefix_name + ".",
            env.scope.calls + ((block.name, c.span),),
            block,
            env.scope,
            env.scope.everywhere,
            instances=env.scope.instances + (prefix_name,),
        )
        inner = Env(scope, x, d.defaults, env.depth + 1)  # a block sees its parameters, no outer let
        for p in block.params:
            if p.name in bound:
                scope.params[p.name] = bound[p.name]
            elif p.default is not None:
                scope.params[p.name] = self._eval(p.default, inner)
            else:
                raise CnnError(f"block {signature} needs a value for '{p.name}'", c.span, code="E017")
        return self.body(block.body, inner, cur)

    def _active_scopes(self, env: Env):
        scope = env.scope
        while scope is not None:
            yield scope
            scope = scope.parent

    # ---------------------------------------------------------------- utilities
    def _default(self, st: ast.Default, env: Env) -> Env:
        defaults = with_default(env.defaults, st, lambda e: self._eval(e, env))
        return Env(env.scope, env.inp, defaults, env.depth, env.lets)

    def _eval(self, expr, env: Env):
        if type(expr) is ast.Num:  # most fields are literals: no lookups to build
            return expr.value
        return evaluate(expr, ExprNames(env), lambda n, s: self._ref(n, s, env), env.inp)

    def _ref(self, name: str, span: Span, env: Env) -> ValueRef:
        node = self.nodes[self.labels.value(name, span, env)]
        src = self.nodes[node.inputs[0]].shape if node.inputs else node.shape
        return ValueRef(name, node, src)

    def _check_size(self, shape: tuple, span: Span, env: Env | None = None) -> None:
        if prod(shape) > INT_LIMIT:
            raise CnnError(
                f"tensor of shape {fmt_shape(shape)} has more elements than fit in 64 bits", span, code="E064"
            )

    def _check_params(self, count: int, span: Span, env: Env) -> None:
        self.params_total += count
        if self.params_total > INT_LIMIT:
            what = f"this layer's {count:,} parameters" if count > INT_LIMIT else "the parameters up to this layer"
            raise CnnError(
                f"{what} bring the network to {self.params_total:,} parameters, more than fit in 64 bits",
                span,
                notes=self._call_notes(env),
                code="E300",
            )

    def _call_notes(self, env: Env) -> list:
        return [(f"in block {name} called", span) for name, span in reversed(env.scope.calls)]

    def _layer_error(self, err: LayerError, span: Span, spans: dict, env: Env) -> CnnError:
        where = spans.get(err.arg, span) if err.arg else span
        message = err.message.replace("{call}", source_text(span)) + self._channels_last_hint()
        return CnnError(message, where, notes=self._call_notes(env), code=err.code)

    def _channels_last_hint(self) -> str:
        """A layer error in a network whose input reads as HxWxC (32x32x3): the hint that
        input is CxHxW, since the error itself is usually far from the input line."""
        shape = self.nodes[0].shape if self.nodes else ()
        if len(shape) == 3 and shape[2] <= 4 and shape[0] > 4 and shape[1] > 4:
            h, w, c = shape
            return (
                f"\n  hint: the input is CxHxW (channels first): input {fmt_shape(shape)} is {h} channels of "
                f"{w}x{c}; for {c} channel{'s' if c != 1 else ''} of {h}x{w} write input {c}x{h}x{w}"
            )
        return ""

    def _add_node(self, kind, name, a, inputs, y, trainable, fixed, macs, conns, window, span, env) -> int:
        # the main path: the widest receptive field among the inputs at the output's resolution
        # (a squeeze-excitation mul follows its full-size branch, not the broadcast Cx1x1 gate)
        if len(inputs) == 1:
            main = inputs[0]
        else:
            same = [i for i in inputs if self.nodes[i].shape[1:] == y[1:]] or list(inputs)
            main = max(same, key=lambda i: prod(self.nodes[i].rf))
        rf, jump = self.nodes[main].rf, self.nodes[main].jump
        if window is not None and len(window[0]) == len(rf):
            steps, strides = window
            rf = tuple(r + (s - 1) * j for r, s, j in zip(rf, steps, jump))
            jump = tuple(j * s for j, s in zip(jump, strides))
        node = Node(
            len(self.nodes),
            name,
            kind,
            MappingProxyType(a),
            tuple(inputs),
            y,
            trainable,
            fixed,
            macs,
            conns,
            rf,
            jump,
            span,
            env.scope.calls,
            env.scope.instances,
        )
        return self._add(node)

    def _add(self, node: Node) -> int:
        if len(self.nodes) > self.max_layers:  # nodes[0] is the input, not a layer
            raise CnnError(
                f"the network unrolls to more than {self.max_layers:,} layers (the limit; raise it with --max-layers)",
                node.span,
                code="E062",
            )
        self.nodes.append(node)
        return node.id


def _typed(value):
    """An argument as a key that tells 1, 1.0 and True apart (they are equal as Python values)."""
    if type(value) is tuple:
        return (tuple, tuple(_typed(v) for v in value))
    return (type(value), value)


class _Texts:
    """Branch descriptions for combinator messages, read from the source only when needed."""

    def __init__(self, items):
        self.items = items

    def __iter__(self):
        for item in self.items:
            yield item if isinstance(item, str) else (source_text(item, 40) or "_")
