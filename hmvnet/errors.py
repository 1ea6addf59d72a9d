"""Errors reported to a user, with messages that name the file or key and what was expected.

Only what the user supplied raises :class:`InputError` (exit code 2, HTTP 422); broken internal invariants are
ordinary exceptions (``ValueError``, ``RuntimeError``) and "not fitted" is scikit-learn's ``NotFittedError``.
"""


class HMVNetError(Exception):
    """Base class for errors this package reports to a user (printed without a traceback by the CLI)."""


class InputError(HMVNetError):
    """Unusable input: a missing, ambiguous, unreadable or invalid file, or a bad value in it."""


class WeightsError(HMVNetError):
    """Missing weights, weights that do not match their configuration, or a checksum mismatch."""


class ConfigError(WeightsError):
    """A configuration file (``config.json`` beside the weights, or a training configuration) with a missing,
    wrong-typed or disallowed value; the message names the file, the key, the value and what was expected.
    A subclass of :class:`WeightsError` because a weights folder's configuration is part of its weights."""
