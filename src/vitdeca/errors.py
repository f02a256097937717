"""The one exception type for problems a user can fix (bad files, missing assets, bad options)."""


class VitdecaError(Exception):
    """A user-facing error: the CLI prints its message on one line and exits with status 2.

    Anything else raised inside vitdeca is a bug and keeps its traceback.
    """


def first_line(exc: BaseException) -> str:
    """The first non-blank line of ``exc``'s message (stripped), or its type's name when it has none:
    a wrapped library error shown inside one line of ours."""
    lines = (line.strip() for line in str(exc).splitlines())
    return next((line for line in lines if line), type(exc).__name__)
