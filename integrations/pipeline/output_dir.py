"""Output folders: which ones a `ua-sam` command may write into, replace files in, or delete.

A folder is *ua-sam's* when it holds the marker file ``.ua-sam-output.json`` (written by `claim`
when a command first writes there; it names the command) or one of the records a caller names
for folders written before the marker existed (``run.json``, ``reproduce.json``).

The rules every command follows:

- it writes only into a folder that is missing, empty, or ua-sam's (so no file of the user's is
  ever replaced);
- ``--overwrite`` deletes only a folder that is ua-sam's, and never the current folder, the home
  folder, a filesystem root, a folder holding any of these, a symbolic link, or a folder that
  holds one of the command's inputs (its data, its checkpoint).

Any other folder is refused with an `OutputFolderError` that lists what the folder holds and
says what to do; nothing is deleted or written before the check.
"""

from __future__ import annotations

import datetime as _dt
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path

import uncertainty_adapters as ua
from uncertainty_adapters import checkpoint as ckpt

MARKER = ".ua-sam-output.json"
_SHOWN_ENTRIES = 5


class OutputFolderError(FileExistsError):
    """A command was asked to write into, or delete, a folder it must not touch; the message
    names the folder, what it holds, and what to do instead."""


def is_ours(folder: str | Path, records: Sequence[str] = ()) -> bool:
    """Whether ``folder`` holds the marker, or one of ``records`` (paths relative to it)."""
    folder = Path(folder)
    return (folder / MARKER).is_file() or any((folder / record).exists() for record in records)


def check(folder: str | Path, records: Sequence[str] = (), option: str = "--out") -> None:
    """Raise `OutputFolderError` unless ``folder`` is missing, empty or ua-sam's (writes nothing).

    Args:
        folder: the output folder a command is about to write into.
        records: files (relative to ``folder``) that mark it as written by this command before
            the marker existed, e.g. ``("run.json",)``.
        option: the command-line option that named ``folder``, used in messages.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise OutputFolderError(f"{option} {folder} is a file; give a folder")
    if not folder.exists() or is_ours(folder, records):
        return
    entries = _entries(folder)
    if entries:
        raise OutputFolderError(
            f"{option} {folder} already holds {_describe(entries)}, which ua-sam did not write; "
            f"nothing was written. Choose a new or empty folder (e.g. {folder / 'ua-sam-output'}) "
            f"so that none of these files is replaced"
        )


def claim(folder: str | Path, command: str, records: Sequence[str] = (), option: str = "--out") -> Path:
    """`check` ``folder``, create it, and mark it as written by ``command``; returns it."""
    folder = Path(folder)
    check(folder, records, option)
    folder.mkdir(parents=True, exist_ok=True)
    if not (folder / MARKER).is_file():
        ckpt.write_json_atomic(folder / MARKER, {
            "written_by": f"ua-sam {command}",
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "library_version": ua.__version__,
        })
    return folder


def remove(
    folder: str | Path,
    records: Sequence[str] = (),
    inputs: Iterable[tuple[str, str | Path | None]] = (),
    option: str = "--overwrite",
) -> None:
    """Delete ``folder`` and everything in it, if the rules of the module docstring allow it.

    Args:
        folder: the folder to delete (nothing happens when it does not exist).
        records: as in `check`.
        inputs: (option, path) pairs of what the command reads, e.g. ``("--data", "/d/x")``;
            a folder holding one of them is refused. None paths are skipped.
        option: the option asking for the deletion, used in messages.

    Raises:
        OutputFolderError: the folder may not be deleted; nothing was deleted.
    """
    folder = Path(folder).expanduser()
    if folder.is_symlink():
        raise OutputFolderError(
            f"{option}: {folder} is a symbolic link (to {folder.resolve()}); ua-sam does not delete "
            f"through links. Nothing was deleted; give the folder itself"
        )
    if not folder.exists():
        return
    if not folder.is_dir():
        raise OutputFolderError(f"{option}: {folder} is a file, not an output folder; nothing was deleted")
    resolved = folder.resolve()
    if resolved.parent == resolved:
        raise OutputFolderError(f"{option} never deletes a filesystem root ({folder}); nothing was deleted")
    for name, protected in (("the current folder", Path.cwd()), ("your home folder", Path.home())):
        protected = protected.resolve()
        if protected == resolved or resolved in protected.parents:
            raise OutputFolderError(
                f"{option} never deletes {name} or a folder holding it, and {folder} is "
                f"{'it' if protected == resolved else 'above it'}. Nothing was deleted; give a sub-folder as --out"
            )
    for name, path in inputs:
        if path is not None and _inside(Path(path).expanduser().resolve(), resolved):
            raise OutputFolderError(
                f"{option}: {folder} holds {path}, the {name} this command reads. Nothing was deleted; "
                f"move the input out of {folder} or choose another --out"
            )
    if not is_ours(folder, records):
        entries = _entries(folder)
        if entries:
            raise OutputFolderError(
                f"{option} deletes only a folder that ua-sam wrote, and {folder} is not one (it holds none of "
                f"{', '.join([MARKER, *records])}) but {_describe(entries)}. "
                f"Nothing was deleted; choose a new or empty --out, or move these files away first"
            )
    shutil.rmtree(folder)


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _entries(folder: Path) -> list[str]:
    return sorted(p.name + ("/" if p.is_dir() else "") for p in folder.iterdir())


def _describe(entries: list[str]) -> str:
    shown = ", ".join(entries[:_SHOWN_ENTRIES])
    more = f" and {len(entries) - _SHOWN_ENTRIES} more" if len(entries) > _SHOWN_ENTRIES else ""
    return f"{len(entries)} entr{'y' if len(entries) == 1 else 'ies'} ({shown}{more})"
