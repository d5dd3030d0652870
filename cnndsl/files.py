"""The files cnndsl writes: atomically, and never over one of the command's inputs.

Every command that writes (export, train, run, graph, fmt) goes through
:func:`write_atomic`: the bytes go to a temporary file beside the destination,
which is flushed to disk and renamed over it, so a reader sees the old file or
the new one, never a partial one, and a failure leaves the old file as it was.

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "out.txt"
    >>> write_atomic(p, lambda f: f.write(b"new"))
    >>> p.read_bytes()
    b'new'
"""

from __future__ import annotations

import os

from cnndsl.errors import CnnError

WRITE_ERROR = "E083"


def read_bytes(
    path,
    code: str,
    what: str | None = None,
    span=None,
    limit: tuple[int, str] | None = None,
    expected: str = "",
    missing: str | None = None,
) -> bytes:
    """The bytes of a file the user named, every way this can fail a diagnostic with ``code``:
    ``{what}: no such file`` (code ``missing`` where given), ``: it is a directory``
    (``, not {expected}``), ``: permission denied``, the OS's reason (or the path's: a NUL
    byte), or with ``limit=(bytes, code)`` a size over the limit. ``what`` defaults to
    ``cannot read PATH``.

        >>> read_bytes("/nonexistent/x.net", "E040")
        Traceback (most recent call last):
        cnndsl.errors.CnnError: cannot read /nonexistent/x.net: no such file
    """
    path = os.fspath(path)
    what = what or f"cannot read {path}"
    try:
        if os.path.isdir(path):
            raise CnnError(f"{what}: it is a directory" + (f", not {expected}" if expected else ""), span, code=code)
        if limit is not None:
            size, most = os.stat(path).st_size, limit[0]
            if size > most:
                message = f"{what}: the file has {size:,} bytes, more than the limit of {most:,}"
                raise CnnError(message, span, code=limit[1])
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        raise CnnError(f"{what}: no such file", span, code=missing or code) from None
    except PermissionError:
        raise CnnError(f"{what}: permission denied", span, code=code) from None
    except OSError as err:
        raise CnnError(f"{what}: {err.strerror or err}", span, code=code) from None
    except ValueError as err:  # a path the OS cannot take: "embedded null byte"
        raise CnnError(f"{what}: {err}", span, code=code) from None


def refuse_overwrite(option: str, out, *inputs, imports=None) -> None:
    """An output path that is one of the command's inputs would destroy that input;
    ``imports()``, called only when ``out`` exists, gives more inputs (the files a .net
    file imports: :func:`cnndsl.ir.compile.net_sources`)."""
    from pathlib import Path  # not imported by info and check (start-up)

    out = Path(out)
    if not out.exists():
        return
    if imports is not None:
        inputs += tuple(imports())
    for given in inputs:
        if given and Path(given).exists() and out.resolve() == Path(given).resolve():
            raise CnnError(
                f"{option} {out} is an input of this command ({given}); choose another output path", code=WRITE_ERROR
            )


def net_files(paths, command: str) -> list:
    """The files named on a command line (``Path``s), each folder replaced by the .net files
    under it (sorted, subfolders included); a folder without any is an error (E202)."""
    from pathlib import Path

    out = []
    for p in paths:
        path = Path(p)
        if path.is_dir():
            found = sorted(path.rglob("*.net"))
            if not found:
                raise CnnError(f"{command}: no .net files under {p}", code="E202")
            out.extend(found)
        else:
            out.append(path)
    return out


def write_atomic(path, write) -> None:
    """Call ``write(f)`` on a binary file beside ``path``, then rename it to ``path``.

    The new file keeps the mode of the file it replaces (an ordinary new file's mode,
    0666 less the umask, otherwise). Any failure removes the temporary file."""
    from pathlib import Path

    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        raise CnnError(f"cannot write {path}: directory {directory} does not exist", code=WRITE_ERROR)
    try:
        import tempfile  # only when writing: info and check never do

        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    except OSError as err:
        raise CnnError(f"cannot write {path}: {err.strerror or err}", code=WRITE_ERROR) from None
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, path.stat().st_mode & 0o7777 if path.exists() else 0o666 & ~_umask())
        os.replace(tmp, path)
    except OSError as err:
        raise CnnError(f"cannot write {path}: {err.strerror or err}", code=WRITE_ERROR) from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
