"""What goes wrong opening an agent's keys, in one place both key stores can import."""

from __future__ import annotations


class KeyFileError(Exception):
    """The key file is missing, malformed or readable by others."""


class TokenError(KeyFileError):
    """A PKCS#11 token refused, or holds something else than its key descriptor says.

    A subclass of ``KeyFileError`` so that whatever reports a bad key file to the operator
    reports a missing token, a wrong PIN or a missing key label the same way.
    """
