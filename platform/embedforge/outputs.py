"""Output files and folders: checked before any work, replaced atomically when written.

A command checks its output first (:func:`check_output_file`, :func:`check_output_folder`),
so a directory given as a file, an unwritable folder or existing output is reported before a
model loads. It then writes beside the target and renames into place
(:func:`replacing_file`, :func:`replacing_folder`), so a failure part way leaves the old
output untouched and a reader never sees a half-written one.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

OVERWRITE_HINT = "pass --overwrite to replace it"


def check_writable(path: Path) -> None:
    """``path`` (an existing folder) or its nearest existing ancestor must be a folder we can write in."""
    path = Path(path)
    if path.is_dir():
        if not os.access(path, os.W_OK | os.X_OK):
            raise PermissionError(f"{path}: folder is not writable")
        return
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise NotADirectoryError(f"{path}: cannot be created, {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise PermissionError(f"{path}: cannot be written, folder {parent} is not writable")


def check_output_file(path: Path, overwrite: bool = False) -> Path:
    """``path`` as an output file: not a folder, not existing unless ``overwrite``, writable."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path}: is a folder; give a file path for the output")
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path}: exists; {OVERWRITE_HINT}")
    check_writable(path.parent if path.is_dir() else path)
    return path


def check_output_folder(path: Path, overwrite: bool = False) -> Path:
    """``path`` as an output folder: not a file, empty or missing unless ``overwrite``, writable."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(f"{path}: is a file; give a folder for the output")
    if path.is_dir() and any(path.iterdir()) and not overwrite:
        raise FileExistsError(f"{path}: folder is not empty; {OVERWRITE_HINT}")
    check_writable(path.parent if path.is_dir() else path)
    return path


@contextmanager
def replacing_file(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` in one rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    os.close(handle)
    staging = Path(name)
    try:
        yield staging
        os.replace(staging, path)
    finally:
        staging.unlink(missing_ok=True)


@contextmanager
def replacing_folder(path: Path) -> Iterator[Path]:
    """Yield an empty folder beside ``path``; on success it takes ``path``'s place.

    The old folder is renamed aside, the new one renamed in, and only then is the old one
    deleted: a failure while writing leaves the old output as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial"))
    try:
        yield staging
        old = None
        if path.exists():
            old = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".old"))
            os.replace(path, old)
        os.replace(staging, path)
        if old is not None:
            shutil.rmtree(old)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
