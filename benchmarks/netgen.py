"""Generated .net texts for scale measurements: long chains and deep nesting.

Used by benchmarks/bench_frontend.py and tests/test_scale.py (one definition).
"""

# One statement per line; conv -> relu is two layers, add { _ ; conv } is a conv and an add.
PATTERN = ("conv 16/3/1/1 -> relu", "bn", "add { _ ; conv 16/3/1/1 }", "relu")
LAYERS_PER_PATTERN = 6  # conv, relu, bn, conv, add, relu


def long_network(lines: int) -> str:
    body = "\n".join("    " + PATTERN[i % len(PATTERN)] for i in range(lines))
    return f"network long {{\n    input 16x32x32\n{body}\n}}\n"


def nested_blocks(depth: int) -> str:
    """block b0 calls b1 calls ... b{depth-1}, which holds the only layer."""
    blocks = [f"block b{i}() {{\n    b{i + 1}()\n}}" for i in range(depth - 1)]
    blocks.append(f"block b{depth - 1}() {{\n    conv 8/3/1/1\n}}")
    return "\n".join(blocks) + "\nnetwork deep {\n    input 4x8x8\n    b0()\n}\n"


def nested_groups(depth: int) -> str:
    return "network deep {\n    input 4x8x8\n    " + "{ " * depth + "conv 8/3/1/1" + " }" * depth + "\n}\n"
