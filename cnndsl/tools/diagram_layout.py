"""A layered (Sugiyama-style) top-to-bottom layout of a diagram, in pure Python.

1. layers: the longest path from the input (every edge points down);
2. an edge spanning several layers gets a dummy node in each layer it crosses,
   so long skip connections take a lane of their own beside the boxes;
3. order within a layer: barycentre sweeps down and up, keeping the order
   with the fewest crossings;
4. x: repeated sweeps pull each box towards the mean of its neighbours, then
   place the layer as close to those wishes as the order and the gaps allow
   (weighted isotonic regression, so boxes move less than lanes of dummies);
5. edges: polylines from the bottom of a box through the lanes of its dummies
   to the top of the next, with ports spread along the box edges.

    >>> from cnndsl import load
    >>> from cnndsl.tools.diagram import diagram
    >>> p = layout(diagram(load("network n { input 3x8x8\\n conv 4/3 -> relu }")))
    >>> [round(p.boxes[i][1]) for i in ("n0", "n1", "n2", "out:output")]
    [16, 90, 164, 238]
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

FONT_SIZE = 11
CHAR_W = 6.63  # advance of DejaVu Sans Mono at 11 px (1233/2048 em)
LINE_H = 14
PAD_X, PAD_Y = 8, 5
MARGIN = 16
LAYER_GAP = 22
BOX_GAP, LANE_GAP = 22, 10
SWEEPS = 12


@dataclass(frozen=True)
class Placed:
    boxes: dict  # box id -> (x, y, w, h), (x, y) the top-left corner
    edges: tuple  # (from id, to id, ((x, y), ...)) polylines, arrow at the end
    width: float
    height: float


def box_size(lines) -> tuple[float, float]:
    return max(len(t) for t in lines) * CHAR_W + 2 * PAD_X, len(lines) * LINE_H + 2 * PAD_Y


def layout(d) -> Placed:
    ids = [b.id for b in d.boxes]
    index = {k: i for i, k in enumerate(ids)}
    sizes = [box_size(b.lines) for b in d.boxes]
    n = len(ids)
    succ: list[list[int]] = [[] for _ in range(n)]
    indeg = [0] * n
    for a, b in d.edges:
        succ[index[a]].append(index[b])
        indeg[index[b]] += 1
    level = _longest_path(succ, indeg)

    # dummies: node k >= n is a lane point of a long edge
    width = [w for w, _ in sizes]
    up: list[list[int]] = [[] for _ in range(n)]
    down: list[list[int]] = [[] for _ in range(n)]
    chains = []
    for a, b in d.edges:
        u, v = index[a], index[b]
        chain = [u]
        for lv in range(level[u] + 1, level[v]):
            k = len(level)
            level.append(lv)
            width.append(0.0)
            up.append([])
            down.append([])
            chain.append(k)
        chain.append(v)
        for p, q in pairwise(chain):
            down[p].append(q)
            up[q].append(p)
        chains.append((a, b, chain))
    real = [k < n for k in range(len(level))]
    layers = _order(level, up, down, n)
    x = _coordinates(layers, up, down, width, real)

    # y: layers stacked top to bottom, boxes centred in their band
    heights = [max([sizes[k][1] for k in layer if k < n] or [0]) for layer in layers]
    tops, y = [], MARGIN
    for h in heights:
        tops.append(y)
        y += h + LAYER_GAP
    left = min(x[k] - width[k] / 2 for k in range(len(x))) if x else 0
    shift = MARGIN - left
    boxes = {}
    for i in range(n):
        w, h = sizes[i]
        lv = level[i]
        boxes[ids[i]] = (x[i] + shift - w / 2, tops[lv] + (heights[lv] - h) / 2, w, h)
    edges = _route(chains, boxes, index, x, shift, level, tops, heights, n)
    right = max((bx + w for bx, _, w, _ in boxes.values()), default=0)
    lanes = max((x[k] + shift for k in range(n, len(x))), default=0)
    return Placed(boxes, tuple(edges), max(right, lanes) + MARGIN, y - LAYER_GAP + MARGIN)


def _longest_path(succ, indeg) -> list[int]:
    level = [0] * len(succ)
    indeg = list(indeg)
    ready = [i for i in range(len(succ)) if indeg[i] == 0]
    ready.reverse()
    while ready:
        u = ready.pop()
        for v in succ[u]:
            level[v] = max(level[v], level[u] + 1)
            indeg[v] -= 1
            if indeg[v] == 0:
                ready.append(v)
    return level


def _order(level, up, down, n) -> list[list[int]]:
    """Layers as lists of nodes, ordered by barycentre sweeps (fewest crossings kept)."""
    # start from a depth-first order: a chain stays together, a skip goes after its body
    seen, rank = [False] * len(level), [0] * len(level)
    counter = 0
    for root in range(len(level)):
        if seen[root] or up[root]:
            continue
        stack = [root]
        while stack:
            v = stack.pop()
            if seen[v]:
                continue
            seen[v] = True
            rank[v] = counter
            counter += 1
            stack.extend(reversed(down[v]))
    for v in range(len(level)):  # unreachable leftovers (none in a network) keep an order
        if not seen[v]:
            rank[v] = counter
            counter += 1
    layers: list[list[int]] = [[] for _ in range(max(level, default=-1) + 1)]
    for v in sorted(range(len(level)), key=lambda v: rank[v]):
        layers[level[v]].append(v)
    best, best_cross = [list(layer) for layer in layers], _crossings(layers, down)
    for sweep in range(SWEEPS):
        going_down = sweep % 2 == 0
        span = range(1, len(layers)) if going_down else range(len(layers) - 2, -1, -1)
        for lv in span:
            ref = layers[lv - 1] if going_down else layers[lv + 1]
            pos = {v: i for i, v in enumerate(ref)}
            near = up if going_down else down
            keys = {}
            for i, v in enumerate(layers[lv]):
                nb = [pos[u] for u in near[v] if u in pos]
                keys[v] = sum(nb) / len(nb) if nb else i
            layers[lv].sort(key=keys.__getitem__)
        cross = _crossings(layers, down)
        if cross < best_cross:
            best, best_cross = [list(layer) for layer in layers], cross
        if best_cross == 0:
            break
    return best


def _crossings(layers, down) -> int:
    total = 0
    for lv in range(len(layers) - 1):
        pos = {v: i for i, v in enumerate(layers[lv + 1])}
        ends = [(i, pos[w]) for i, v in enumerate(layers[lv]) for w in down[v] if w in pos]
        for j, (a, b) in enumerate(ends):
            for c, e in ends[j + 1 :]:
                if (a - c) * (b - e) < 0:
                    total += 1
    return total


def _coordinates(layers, up, down, width, real) -> list[float]:
    x = [0.0] * len(width)

    def gap(a, b):
        return (width[a] + width[b]) / 2 + (BOX_GAP if real[a] and real[b] else LANE_GAP)

    for layer in layers:
        pos = 0.0
        for j, v in enumerate(layer):
            if j:
                pos += gap(layer[j - 1], v)
            x[v] = pos
        for v in layer:
            x[v] -= pos / 2
    for sweep in range(2 * SWEEPS):
        going_down = sweep % 2 == 0
        order = layers if going_down else layers[::-1]
        for layer in order:
            wish = []
            for v in layer:
                nb = up[v] if going_down else down[v]
                solid = [u for u in nb if real[u]] if real[v] else []
                use = solid or nb
                wish.append(sum(x[u] for u in use) / len(use) if use else x[v])
            offsets = [0.0]
            for a, b in pairwise(layer):
                offsets.append(offsets[-1] + gap(a, b))
            weights = [4.0 if real[v] else 1.0 for v in layer]
            placed = _isotonic([w - o for w, o in zip(wish, offsets)], weights)
            for v, z, o in zip(layer, placed, offsets):
                x[v] = z + o
    return x


def _isotonic(values, weights) -> list[float]:
    """The non-decreasing sequence closest to ``values`` in weighted least squares (pool adjacent violators)."""
    blocks: list[list[float]] = []  # [mean, weight, count]
    for v, w in zip(values, weights):
        blocks.append([v, w, 1])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            m2, w2, c2 = blocks.pop()
            m1, w1, c1 = blocks.pop()
            blocks.append([(m1 * w1 + m2 * w2) / (w1 + w2), w1 + w2, c1 + c2])
    out = []
    for m, _, c in blocks:
        out.extend([m] * c)
    return out


def _route(chains, boxes, index, x, shift, level, tops, heights, n):
    """Polylines with ports spread along the bottom and top edges of the boxes."""

    def lane_x(chain, at_start):
        k = chain[1] if at_start else chain[-2]
        return x[k] + shift

    outs: dict[str, list] = {}
    ins: dict[str, list] = {}
    for j, (a, b, chain) in enumerate(chains):
        outs.setdefault(a, []).append((lane_x(chain, True), j))
        ins.setdefault(b, []).append((lane_x(chain, False), j))
    ports: dict[tuple, float] = {}
    for side, table in (("out", outs), ("in", ins)):
        for k, items in table.items():
            bx, _, w, _ = boxes[k]
            items.sort()
            spread = min(w * 0.6, 14.0 * (len(items) - 1))
            for m, (_, j) in enumerate(items):
                t = 0.5 if len(items) == 1 else m / (len(items) - 1)
                ports[(side, j)] = bx + w / 2 - spread / 2 + t * spread
    edges = []
    for j, (a, b, chain) in enumerate(chains):
        _, ay, _, ah = boxes[a]
        by = boxes[b][1]
        points = [(ports[("out", j)], ay + ah)]
        for k in chain[1:-1]:
            lv = level[k]
            points.append((x[k] + shift, tops[lv] - LAYER_GAP / 4))
            points.append((x[k] + shift, tops[lv] + heights[lv] + LAYER_GAP / 4))
        points.append((ports[("in", j)], by))
        edges.append((a, b, tuple((round(px, 1), round(py, 1)) for px, py in points)))
    return edges
