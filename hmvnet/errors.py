"""Errors raised at the boundary, with messages that name the file or key and what was expected."""


class HMVNetError(Exception):
    """Base class for errors this package reports to a user (printed without a traceback by the CLI)."""


class InputError(HMVNetError):
    """Unusable input: a missing, ambiguous, unreadable or invalid file, or a bad value in it."""


class WeightsError(HMVNetError):
    """Missing weights, a configuration that does not match them, or a checksum mismatch."""
