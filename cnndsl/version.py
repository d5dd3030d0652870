"""The version of cnndsl (read by pyproject.toml and written into every ONNX export)."""

__version__ = "0.1.0"
