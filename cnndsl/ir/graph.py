"""The IR: a network as a flat, topologically ordered tuple of immutable nodes.

Blocks are expanded, repeats unrolled; every node knows its source span and the
block-call chain it came from. Node ``i`` produces value ``i``; ``inputs`` are
the ids of the nodes it reads.
"""

from __future__ import annotations

from types import MappingProxyType

from cnndsl.errors import Diagnostic, Span
from cnndsl.records import record


@record(frozen=True, slots=True)
class Node:
    id: int
    name: str  # hierarchical: "bottleneck_3.conv_1"
    kind: str
    attrs: MappingProxyType  # canonical arguments of the layer kind
    inputs: tuple[int, ...]
    shape: tuple[int, ...]  # output, without the batch axis
    trainable: int
    fixed: int  # non-trainable parameters (BN running statistics, RBF centres)
    macs: int
    connections: int
    rf: tuple  # receptive field per spatial axis of the network input
    jump: tuple  # cumulative stride per axis (a Fraction after upsampling)
    span: Span | None
    calls: tuple[tuple[str, Span], ...]  # enclosing block calls, outermost first
    # the enclosing block instances' full names, outermost first, one per call:
    # ("layer1_1", "layer1_1.bottleneck"); tells apart the instances of a repeat
    scopes: tuple[str, ...] = ()

    @property
    def params(self) -> int:
        return self.trainable + self.fixed


@record(frozen=True)
class Graph:
    network: str
    file: str
    input_shape: tuple[int, ...]
    nodes: tuple[Node, ...]
    outputs: tuple[tuple[str, int], ...]  # (name, node id)
    warnings: tuple[Diagnostic, ...]
    defines: MappingProxyType  # network parameters as bound
