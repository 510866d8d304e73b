"""The user's text files (job descriptions, token files, files of job ids): UTF-8, or one
clear line saying what is wrong with the file."""

from __future__ import annotations

from pathlib import Path

from client.errors import InputError


def read_text(path: Path, what: str = "job description") -> str:
    """The file as text: UTF-8 (a byte-order mark is fine); anything else is a clear error."""
    try:
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise InputError(f"{path}: no such file") from exc
    except IsADirectoryError as exc:
        raise InputError(f"{path}: is a directory, not a {what}") from exc
    except PermissionError as exc:
        raise InputError(f"{path}: permission denied") from exc
    except OSError as exc:
        raise InputError(f"{path}: cannot read it: {exc.strerror or exc}") from exc
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise InputError(
            f"{path}: line {line}, column {column}: not UTF-8 text "
            f"(byte 0x{data[exc.start]:02x}); save the file as UTF-8",
            details={"line": line, "column": column},
        ) from exc
