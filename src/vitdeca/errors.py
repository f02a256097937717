"""The error policy: who raises what.

- :class:`VitdecaError`: a problem the user can fix (a bad input file, a missing asset, a bad option or
  config value). The CLI prints its message on one line and exits with status 2.
- ``ValueError`` / ``TypeError`` (and other built-in errors): a programming error, e.g. a tensor of the
  wrong shape or dtype handed from one stage to the next. They keep their traceback.
- :class:`NonFiniteError`: a numerical failure (NaN or Inf reached the geometry or the renderer). It is a
  ``RuntimeError``, so outside training it is a bug report with a traceback; the trainer catches it and
  counts the step as non-finite (skipped) like a NaN loss.
"""


class VitdecaError(Exception):
    """A user-facing error: the CLI prints its message on one line and exits with status 2.

    Anything else raised inside vitdeca is a bug and keeps its traceback.
    """


def first_line(exc: BaseException) -> str:
    """The first non-blank line of ``exc``'s message (stripped), or its type's name when it has none:
    a wrapped library error shown inside one line of ours."""
    lines = (line.strip() for line in str(exc).splitlines())
    return next((line for line in lines if line), type(exc).__name__)


class NonFiniteError(RuntimeError):
    """NaN or Inf values where the maths needs finite ones (e.g. the vertices handed to the rasteriser)."""
