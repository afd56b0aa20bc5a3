"""Exceptions the CLI turns into one-line messages (exit 2) instead of tracebacks.

Every error caused by the user's input or environment is an ``OmnisegError``; the API raises one
of the subclasses below and nothing else for bad input (RELIABILITY.md lists the cases and which
one each raises). Anything else escaping the library is a bug: the CLI reports it as an internal
error (exit 1).

    OmnisegError
    ├── InputError            (also a ValueError)         bad image, mask, vocabulary, argument
    ├── MissingResourceError  (also a FileNotFoundError)  no model / dataset / package where looked for
    ├── ModelLoadError        (also a ValueError)         model files exist but are not usable weights
    └── OutputError           (also an OSError)           results cannot be written (permissions, disk full)

Warnings (``OmnisegWarning``, a UserWarning) mean the input was accepted with a caveat the user
should know about, e.g. only the first frame of an animated GIF was used. The CLI prints each as
one ``omniseg: warning: ...`` line on stderr.
"""


class OmnisegError(Exception):
    """Base class of errors caused by the user's input or environment, not by a bug."""


class InputError(OmnisegError, ValueError):
    """Bad input: unreadable, truncated, empty or oversized image; mask of the wrong size or kind;
    empty or duplicated vocabulary; malformed argument; unsafe output name."""


class TooLargeError(InputError):
    """Input over a size limit (bytes or pixels); the server answers 413."""


class MissingResourceError(OmnisegError, FileNotFoundError):
    """A model, dataset or package the command needs is not where it was looked for."""


class ModelLoadError(OmnisegError, ValueError):
    """A model directory exists but cannot be used: corrupt or truncated weights, a file that is not
    safetensors (a pickle is refused without being unpickled), an invalid config.json, or a config
    that does not match the weights."""


class OutputError(OmnisegError, OSError):
    """A result could not be written: output directory not writable or not a directory, disk full.

    The write is atomic: the previous file (if any) is intact and no partial file is left. ``errno``
    is the operating system's error number when there was one.
    """


class OmnisegWarning(UserWarning):
    """Input accepted with a caveat (the CLI prints one ``omniseg: warning:`` line)."""


class MultiFrameWarning(OmnisegWarning):
    """An animated GIF, multi-page TIFF (or other multi-frame file) was given: only its first frame is used."""


class SkippedInputWarning(OmnisegWarning):
    """An input path was skipped (a symbolic link loop, a broken link): the rest is processed."""


class CacheWarning(OmnisegWarning):
    """A cache or store is damaged or unusable: rebuilt, or the run goes on without it."""
