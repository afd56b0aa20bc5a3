"""Exceptions the CLI turns into one-line messages (exit 2) instead of tracebacks."""


class OmnisegError(Exception):
    """Base class of errors caused by the user's input or environment, not by a bug."""


class InputError(OmnisegError, ValueError):
    """Bad input: unreadable image, empty vocabulary, malformed argument."""


class MissingResourceError(OmnisegError, FileNotFoundError):
    """A model, dataset or package the command needs is not where it was looked for."""
