"""The command-line convention of ``python -m training.<command>``: bad input ends in one line, not a traceback.

A main wrapped with :func:`one_line_errors` turns the errors that mean "the
input is wrong" (bad config values, unreadable or inconsistent files, missing
folders, ...) into one line on stderr, ``<prog>: error: <what> ...`` with what
to do, and exit code 2 (argparse's code for bad usage). ``--debug`` anywhere
on the command line lets them through with their traceback. Anything else is
a bug and keeps its traceback.
"""

from __future__ import annotations

import functools
import sys
from typing import Callable, Optional, Sequence

import yaml

from faa_core.errors import FAAError

DEBUG_FLAG = "--debug"
DEBUG_HELP = "show the traceback of an error instead of one line"


class UserError(ValueError):
    """Bad input the user can fix (a data folder, a run folder, a file); the message names it and the fix."""


# what bad input raises; everything else (a bug) keeps its traceback
KNOWN_ERRORS: tuple[type[BaseException], ...] = (
    ValueError, KeyError, IndexError, FileNotFoundError, FileExistsError, NotADirectoryError, IsADirectoryError,
    PermissionError, yaml.YAMLError, FAAError,
)


def one_line(exc: BaseException) -> str:
    """The exception's message on one line (KeyError's repr quotes removed)."""
    text = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
    text = " ".join(text.split()) or type(exc).__name__
    return text


def one_line_errors(prog: str) -> Callable[[Callable[[Optional[Sequence[str]]], int]], Callable[..., int]]:
    """Decorate a ``main(argv)``: known errors -> one line on stderr and exit code 2, unless ``--debug`` is given.

    ``--debug`` is taken out of ``argv`` before ``main`` sees it, so mains
    need not declare it (they may, for their ``--help``).
    """

    def wrap(main: Callable[[Optional[Sequence[str]]], int]) -> Callable[..., int]:
        @functools.wraps(main)
        def wrapped(argv: Optional[Sequence[str]] = None) -> int:
            args = list(sys.argv[1:] if argv is None else argv)
            debug = DEBUG_FLAG in args
            try:
                return main([a for a in args if a != DEBUG_FLAG])
            except KNOWN_ERRORS as exc:
                if debug:
                    raise
                print(f"{prog}: error: {one_line(exc)} (add {DEBUG_FLAG} for the traceback)", file=sys.stderr)
                return 2

        return wrapped

    return wrap
