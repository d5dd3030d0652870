"""Drawing a laid-out diagram: SVG text, a PNG with Pillow, or Graphviz DOT text.

The SVG and the PNG draw the same layout (:mod:`cnndsl.graph_layout`); DOT
leaves the layout to Graphviz. Boxes are shaded by their share of the
network's parameters (the square root of it relative to the largest, so that
small layers stay visible); a collapsed block has a thick border.

    >>> from cnndsl import load
    >>> from cnndsl.tools.diagram import diagram
    >>> print(to_dot(diagram(load("network n { input 3x8x8\\n conv 4/3 }"))).splitlines()[4])
      "n0" [label="input\\ninput\\n3x8x8", fillcolor="#f2f2f2", penwidth=1, tooltip="input: input -> 3x8x8, 0 parameters"];
"""  # noqa: E501 - a line of DOT output

from __future__ import annotations

import io
import textwrap
from xml.sax.saxutils import escape, quoteattr

from cnndsl.tools.diagram_layout import CHAR_W, FONT_SIZE, LINE_H, MARGIN, PAD_Y

FONT_FAMILY = "DejaVu Sans Mono, Menlo, Consolas, monospace"
DARKEST = (104, 156, 222)  # the fill of the box with the most parameters
PLAIN = (242, 242, 242)  # input and outputs
EDGE = "#555555"
TITLE_H = 18


def shade(box, biggest: int) -> tuple[int, int, int]:
    if box.role in ("input", "output"):
        return PLAIN
    t = (box.params / biggest) ** 0.5 if biggest else 0.0
    return tuple(round(255 + (c - 255) * t) for c in DARKEST)


def _hex(rgb) -> str:
    return "#{:02x}{:02x}{:02x}".format(*rgb)


def _header(d, width: float) -> list[str]:
    chars = max(40, int((width - 2 * MARGIN) / CHAR_W))
    return textwrap.wrap(d.caption, chars)


def _canvas(d, placed):
    """Width, the caption's lines and the height of the header above the layout."""
    width = max(placed.width, 420.0)
    lines = _header(d, width)
    top = MARGIN + TITLE_H + LINE_H * len(lines)
    return width, lines, top


def to_svg(d, placed) -> str:
    width, caption, top = _canvas(d, placed)
    height = top + placed.height
    biggest = max((b.params for b in d.boxes), default=0)
    out = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        (
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
            f'viewBox="0 0 {width:.0f} {height:.0f}" font-family={quoteattr(FONT_FAMILY)} font-size="{FONT_SIZE}">'
        ),
        f"<title>{escape(f'network {d.network}')}</title>",
        (
            '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" '
            f'orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="{EDGE}"/></marker></defs>'
        ),
        '<rect x="0" y="0" width="100%" height="100%" fill="white"/>',
        (
            f'<text class="title" x="{MARGIN}" y="{MARGIN + 12}" font-size="14" font-weight="bold">'
            f"{escape(d.network)}</text>"
        ),
    ]
    for i, line in enumerate(caption):
        out.append(
            f'<text class="caption" x="{MARGIN}" y="{MARGIN + TITLE_H + 11 + i * LINE_H}" fill="#444">'
            f"{escape(line)}</text>"
        )
    out.append(f'<g transform="translate(0,{top:.0f})">')
    for a, b, points in placed.edges:
        path = "M" + " L".join(f"{x},{y}" for x, y in points)
        out.append(
            f'<path class="edge" data-from={quoteattr(a)} data-to={quoteattr(b)} d="{path}" fill="none" '
            f'stroke="{EDGE}" stroke-width="1.2" marker-end="url(#arrow)"/>'
        )
    for box in d.boxes:
        x, y, w, h = placed.boxes[box.id]
        border = 'stroke-width="2.5" stroke-dasharray="6 3"' if box.role == "block" else 'stroke-width="1"'
        rx = 12 if box.role in ("input", "output") else 4
        out.append(
            f'<g class="node" id={quoteattr(box.id)} data-role="{box.role}">'
            f"<title>{escape(box.tooltip)}</title>"
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{w:.1f}" height="{h:.1f}" rx="{rx}" '
            f'fill="{_hex(shade(box, biggest))}" stroke="#333" {border}/>'
        )
        cx = x + w / 2
        for j, (text, style) in enumerate(zip(box.lines, ('fill="#555"', 'font-weight="bold"', ""))):
            ty = y + PAD_Y + 11 + j * LINE_H
            out.append(f'<text x="{cx:.1f}" y="{ty:.1f}" text-anchor="middle" {style}>{escape(text)}</text>')
        out.append("</g>")
    out.append("</g>")
    out.append("</svg>")
    return "\n".join(out) + "\n"


def png_scale(placed) -> int:
    """2x for crisp text, 1x for tall networks (keeps ResNet-152 under ~60,000 px)."""
    return 2 if placed.height * 2 <= 16_000 else 1


def _font(size: int, bold: bool = False):
    from PIL import ImageFont

    for name in (("DejaVuSansMono-Bold.ttf",) if bold else ()) + ("DejaVuSansMono.ttf",):
        try:
            return ImageFont.truetype(name, size)
        except OSError:
            continue
    return ImageFont.load_default(size)


def to_png(d, placed) -> bytes:
    from PIL import Image, ImageDraw

    s = png_scale(placed)
    width, caption, top = _canvas(d, placed)
    height = top + placed.height
    img = Image.new("RGB", (round(width * s), round(height * s)), "white")
    draw = ImageDraw.Draw(img)
    font, bold, big = _font(FONT_SIZE * s), _font(FONT_SIZE * s, True), _font(14 * s, True)
    draw.text((MARGIN * s, (MARGIN + 12) * s), d.network, font=big, fill="black", anchor="ls")
    for i, line in enumerate(caption):
        draw.text((MARGIN * s, (MARGIN + TITLE_H + 11 + i * LINE_H) * s), line, font=font, fill="#444444", anchor="ls")
    biggest = max((b.params for b in d.boxes), default=0)
    edge = (85, 85, 85)
    for _, _, points in placed.edges:
        pts = [(px * s, (py + top) * s) for px, py in points]
        draw.line(pts, fill=edge, width=max(1, round(1.2 * s)), joint="curve")
        _arrowhead(draw, pts[-2], pts[-1], 7 * s, edge)
    for box in d.boxes:
        x, y, w, h = placed.boxes[box.id]
        rect = (x * s, (y + top) * s, (x + w) * s, (y + top + h) * s)
        thick = round((2.5 if box.role == "block" else 1) * s)
        radius = (12 if box.role in ("input", "output") else 4) * s
        draw.rounded_rectangle(rect, radius=radius, fill=shade(box, biggest), outline=(51, 51, 51), width=thick)
        cx = (x + w / 2) * s
        for j, text in enumerate(box.lines):
            ty = (y + top + PAD_Y + 11 + j * LINE_H) * s
            f = bold if j == 1 else font
            draw.text((cx, ty), text, font=f, fill="#555555" if j == 0 else "black", anchor="ms")
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _arrowhead(draw, p, q, size, fill) -> None:
    (x0, y0), (x1, y1) = p, q
    dx, dy = x1 - x0, y1 - y0
    length = (dx * dx + dy * dy) ** 0.5 or 1.0
    ux, uy = dx / length, dy / length
    bx, by = x1 - ux * size, y1 - uy * size
    draw.polygon(
        [(x1, y1), (bx - uy * size / 2.5, by + ux * size / 2.5), (bx + uy * size / 2.5, by - ux * size / 2.5)],
        fill=fill,
    )


def _dot_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def to_dot(d) -> str:
    """Graphviz DOT text: one line per box, one per edge (``dot -Tsvg`` lays it out)."""
    biggest = max((b.params for b in d.boxes), default=0)
    lines = [
        f"digraph {_dot_string(d.network)} {{",
        f"  graph [rankdir=TB, labelloc=t, label={_dot_string(d.caption)}];",
        '  node [shape=box, style="rounded,filled", fontname="DejaVu Sans Mono", fontsize=10];',
        '  edge [color="#555555", arrowsize=0.7];',
    ]
    for box in d.boxes:
        pen = 3 if box.role == "block" else 1
        lines.append(
            f"  {_dot_string(box.id)} [label={_dot_string(chr(10).join(box.lines))}, "
            f'fillcolor="{_hex(shade(box, biggest))}", penwidth={pen}, tooltip={_dot_string(box.tooltip)}];'
        )
    for a, b in d.edges:
        lines.append(f"  {_dot_string(a)} -> {_dot_string(b)};")
    lines.append("}")
    return "\n".join(lines) + "\n"
