"""Errors a user causes (a missing or broken file, bad data) and how the command lines show them.

A user error is not a bug: its message already names the file and the problem, so a traceback above it only
hides it. ``UserError`` marks such errors (every loader's error class derives from it, beside its builtin base);
missing files (``FileNotFoundError`` & co.) and unreadable images count too. ``install_excepthook()`` (run when
``common`` is imported, so every ``main.py`` and ``python -m projects.<p>.<script>`` has it) prints an uncaught
user error as ``error: <message>`` alone and exits with status 1; ``PAPERLAB_DEBUG=1`` (or ``--debug`` on a
``main.py`` command line) brings the traceback back. Bugs keep their traceback. Only uncaught exceptions are
affected: code and tests that call the functions still get the exception itself.

``LineErrors`` collects the bad lines of a line-based file (annotation lists, CSVs) so that one error lists
every bad line with its number, up to a limit, instead of stopping at the first.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

DEBUG_ENV = "PAPERLAB_DEBUG"
DEBUG_HINT = f"(set {DEBUG_ENV}=1 or pass --debug to main.py for the traceback)"


class UserError(Exception):
    """Base of the errors a user causes rather than a bug; the message names the file and the problem."""


class AnnotationError(UserError, ValueError):
    """A line-based annotation file has bad lines; the message lists them with their numbers."""


class MediaError(UserError, RuntimeError):
    """An image or video file cannot be read or decoded; the message names the file."""


def debug_enabled() -> bool:
    """``$PAPERLAB_DEBUG`` set to anything but empty/0/false/no."""
    return os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no")


# Missing or unreadable paths are always the caller's; PIL's UnidentifiedImageError (an OSError) names the file.
_PATH_ERRORS = (FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError)
_NAMED_USER_ERRORS = ("PIL.UnidentifiedImageError",)


def is_user_error(exc: BaseException) -> bool:
    """Whether ``exc`` is a user error (see the module docstring), not a bug."""
    if isinstance(exc, (UserError, *_PATH_ERRORS)):
        return True
    return any(f"{c.__module__}.{c.__qualname__}" in _NAMED_USER_ERRORS for c in type(exc).__mro__)


def user_message(exc: BaseException) -> str:
    """The one message to print for a user error.

    An error re-raised from a DataLoader worker carries the worker's traceback in its message; only the
    original message (its last line) is kept.
    """
    msg = str(exc)
    if isinstance(exc, OSError) and exc.filename is not None and str(exc.filename) not in msg:
        msg = f"{exc.filename}: {msg}"
    if "Original Traceback (most recent call last)" in msg:
        last = msg.strip().splitlines()[-1]
        msg = last.split(": ", 1)[1] if ": " in last else last
    return msg or type(exc).__name__


_previous_hook: Callable | None = None


def _excepthook(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
    if not debug_enabled() and is_user_error(exc):
        print(f"error: {user_message(exc)}\n{DEBUG_HINT}", file=sys.stderr, flush=True)
        return
    (_previous_hook or sys.__excepthook__)(kind, exc, tb)


def install_excepthook() -> None:
    """Show uncaught user errors as their message alone (idempotent; chains to the previous hook for the rest)."""
    global _previous_hook
    if sys.excepthook is _excepthook:
        return
    _previous_hook = sys.excepthook
    sys.excepthook = _excepthook


def pop_debug_flag(argv: list[str]) -> list[str]:
    """Remove ``--debug`` from a command line, setting ``$PAPERLAB_DEBUG=1`` when it was there."""
    if "--debug" in argv:
        os.environ[DEBUG_ENV] = "1"
        argv = [a for a in argv if a != "--debug"]
    return argv


class LineErrors:
    """Collects the bad lines of one file; ``raise_if_any()`` raises one ``AnnotationError`` listing them.

    Usage: ``errors = LineErrors(path, expected="'<dir> <frames> <label>'")``, then ``errors.add(line_no,
    problem, text)`` for each bad line while reading on, ``errors.lines_seen = n`` and ``errors.raise_if_any()``.
    The message lists at most ``limit`` lines as ``<file>:<line>: <problem>: '<text>'`` (the form editors jump
    to), then "and N more".
    """

    def __init__(self, file: str | os.PathLike, limit: int = 20, expected: str = "") -> None:
        self.file = Path(file)
        self.limit = limit
        self.expected = expected
        self.items: list[tuple[int, str, str]] = []
        self.lines_seen = 0

    def add(self, line_no: int, problem: str, line: str | None = None) -> None:
        """Record that line ``line_no`` (1-based) has ``problem``; ``line`` is its text, quoted in the message."""
        self.items.append((line_no, problem, (line or "").strip()))

    def __bool__(self) -> bool:
        return bool(self.items)

    def message(self) -> str:
        n = len(self.items)
        head = f"{self.file}: {n} bad line{'s' if n != 1 else ''}"
        if self.lines_seen:
            head += f" (of {self.lines_seen})"
        if self.expected:
            head += f"; each line must be {self.expected}"
        rows = []
        for line_no, problem, text in self.items[: self.limit]:
            shown = text if len(text) <= 80 else text[:77] + "..."
            rows.append(f"  {self.file}:{line_no}: {problem}" + (f": {shown!r}" if text else ""))
        if n > self.limit:
            rows.append(f"  and {n - self.limit} more")
        return head + "\n" + "\n".join(rows)

    def raise_if_any(self) -> None:
        if self.items:
            raise AnnotationError(self.message())
