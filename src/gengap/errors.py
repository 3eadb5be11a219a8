"""The one exception type for a user's mistake.

Anything raised as :class:`GengapError` is bad input (a config, a file, an argument): the CLI
prints its message on one line and exits with status 2, without a traceback. Every other
exception is a bug in gengap and keeps its traceback.
"""


class GengapError(Exception):
    """Bad input, described in one line that names the file or value and the problem."""
