"""The one exception type for problems a user can fix (bad files, missing assets, bad options)."""


class VitdecaError(Exception):
    """A user-facing error: the CLI prints its message on one line and exits with status 2.

    Anything else raised inside vitdeca is a bug and keeps its traceback.
    """
