"""The elaboration pass's environment: block-instance scopes and what an expression sees."""

from __future__ import annotations

from cnndsl.lang import tree as ast
from cnndsl.lang.modules import Module
from cnndsl.records import factory, record


@record(frozen=False, eq=False)
class Scope:
    """One block instance (or the network): its parameters, labels and names."""

    module: Module
    params: dict
    prefix: str
    calls: tuple
    definition: ast.BlockDef
    parent: Scope | None = None
    everywhere: set = factory(set)  # full names taken in the whole network (shared)
    labels: dict = factory(dict)  # name -> (node id, span of the label)
    counters: dict = factory(dict)
    instances: tuple = ()  # full names of this and the enclosing block instances, outermost first

    def unique(self, base: str) -> str:
        """A full name not used yet in the network: base, base_1, base_2 ...

        Checked against every full name, not only this scope's: ``x: b() -> conv``
        names the block's layers ``x.conv ...`` and must not give the chain's
        conv the same name."""
        taken = self.everywhere
        if self.prefix + base not in taken:
            taken.add(self.prefix + base)
            return self.prefix + base
        n = self.counters.get(base, 0)
        while True:
            n += 1
            candidate = f"{self.prefix}{base}_{n}"
            if candidate not in taken:
                break
        self.counters[base] = n
        taken.add(candidate)
        return candidate


@record(frozen=True, eq=False)
class Env:
    scope: Scope
    inp: tuple | None  # the shape for in.c, in.h ...; None before the network's input
    defaults: dict  # kind -> {keyword: (value, span)}
    depth: int
    lets: dict = factory(dict)  # names bound by let and repeat ... as, visible here

    def nested(self, inp: tuple | None = None) -> Env:
        """The environment one level deeper (a group, repeat or branch), with ``in`` = inp."""
        return Env(self.scope, self.inp if inp is None else inp, self.defaults, self.depth + 1, self.lets)

    def bind(self, name: str, value) -> Env:
        """This environment with one more ``let`` name (for the statements after it)."""
        return Env(self.scope, self.inp, self.defaults, self.depth, {**self.lets, name: value})


class ExprNames:
    """Name lookup for expressions: let names, parameters, then the tables and functions of
    the file (with .names for hints)."""

    def __init__(self, env: Env):
        self.env = env

    def __call__(self, name):
        lets, scope = self.env.lets, self.env.scope
        if name in lets:
            return lets[name]
        if name in scope.params:
            return scope.params[name]
        return scope.module.names(name)

    @property
    def names(self):
        scope = self.env.scope
        return tuple(self.env.lets) + tuple(scope.params) + tuple(scope.module.tables) + tuple(scope.module.functions)
