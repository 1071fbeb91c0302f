"""One logged-in session per token per process, and PKCS#11 failures in the operator's words.

PKCS#11 logs in an application, not a session: a second ``C_Login`` on the same token
fails with ``CKR_USER_ALREADY_LOGGED_IN``. So every key on a token (a broker's, a test's
buyer and vendor) shares one session, opened once. The library is initialised without
``CKF_OS_LOCKING_OK`` and a session is not meant for two threads at once, so each session
carries the lock that every operation on it holds (protocol cores may run in threads).
"""

from __future__ import annotations

import hashlib
import hmac
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pkcs11
from pkcs11 import exceptions as p11

from agents.runtime.key_errors import TokenError

if TYPE_CHECKING:
    from pkcs11._pkcs11 import lib


@dataclass(eq=False)
class TokenSession:
    """A logged-in read/write session on one token, and the lock its users share."""

    module: str
    token_label: str
    session: pkcs11.Session
    pin_digest: bytes
    lock: threading.Lock = field(default_factory=threading.Lock)

    @contextmanager
    def use(self, doing: str) -> Iterator[pkcs11.Session]:
        """Hold the lock and report any token failure as a ``TokenError`` about ``doing``."""
        with self.lock, token_errors(self.token_label, doing):
            yield self.session


_sessions: dict[tuple[str, str], TokenSession] = {}
_modules: set[str] = set()
_registry_lock = threading.Lock()


def open_session(module: str, token_label: str, pin: str) -> TokenSession:
    """The process's session on ``token_label``, logging in with ``pin`` the first time."""
    digest = hashlib.sha256(pin.encode()).digest()
    with _registry_lock:
        known = _sessions.get((module, token_label))
        if known is not None:
            if not hmac.compare_digest(known.pin_digest, digest):
                raise TokenError(
                    f"wrong PIN for token {token_label}: not the PIN this process logged in with"
                )
            return known
        library = load_module(module)
        token = find_token(library, module, token_label)
        with token_errors(token_label, "logging in"):
            session = token.open(rw=True, user_pin=pin)
        opened = TokenSession(module, token_label, session, digest)
        _sessions[module, token_label] = opened
        return opened


def close_sessions() -> None:
    """Log out of every token and finalise every module (a test's fresh token is then seen).

    Finalising also ends sessions the library opened but could not log in (python-pkcs11
    opens the session before ``C_Login`` and drops it when the PIN is refused).
    """
    with _registry_lock:
        sessions = list(_sessions.values())
        _sessions.clear()
        for opened in sessions:
            with opened.lock, suppress(p11.PKCS11Error):
                opened.session.close()
        for module in _modules:
            with suppress(p11.PKCS11Error):
                pkcs11.lib(module).finalize()
        _modules.clear()


def load_module(module: str) -> lib:
    """The PKCS#11 library at ``module``, loaded once per process."""
    if not Path(module).is_file():
        raise TokenError(f"no PKCS#11 module at {module}")
    try:
        library = pkcs11.lib(module)
    except p11.PKCS11Error as exc:
        if str(exc):  # the loader's own words: not a shared library, a missing symbol, ...
            raise TokenError(f"{module} is not a loadable PKCS#11 module: {exc}") from exc
        raise TokenError(  # loaded, but C_Initialize failed, which python-pkcs11 leaves unsaid
            f"{module} did not start ({type(exc).__name__}); a module usually fails so when its"
            " own configuration is missing or wrong (SoftHSM2: SOFTHSM2_CONF and the token"
            " directory it names)"
        ) from exc
    _modules.add(module)
    return library


def find_token(library: lib, module: str, token_label: str) -> pkcs11.Token:
    """The one token labelled ``token_label``; the error names the labels there are."""
    with token_errors(token_label, "looking for the token"):
        tokens = list(library.get_tokens(token_label=token_label))
        if len(tokens) == 1:
            return tokens[0]
        present = sorted({token.label for token in library.get_tokens()} - {""})
    if tokens:
        raise TokenError(f"{len(tokens)} tokens are labelled {token_label} in {module}")
    listed = ", ".join(present) if present else "none"
    raise TokenError(f"no token labelled {token_label} in {module} (tokens there: {listed})")


_MESSAGES: dict[type[p11.PKCS11Error], str] = {
    p11.PinIncorrect: "wrong PIN for token {token}",
    p11.PinLocked: "the PIN of token {token} is locked after too many wrong PINs; "
    "the security officer must unlock it",
    p11.PinExpired: "the PIN of token {token} has expired; set a new one",
    p11.PinLenRange: "the PIN given for token {token} is too short or too long",
    p11.PinInvalid: "the PIN given for token {token} has characters the token refuses",
    p11.UserPinNotInitialized: "token {token} has no user PIN yet; initialise it",
    p11.TokenNotPresent: "token {token} is not present (removed?)",
    p11.DeviceRemoved: "token {token} was removed",
    p11.SessionHandleInvalid: "the session on token {token} was closed",
}


@contextmanager
def token_errors(token_label: str, doing: str) -> Iterator[None]:
    """Turn the library's exceptions (which carry no message) into sentences."""
    try:
        yield
    except p11.PKCS11Error as exc:
        known = _MESSAGES.get(type(exc))
        if known is not None:
            raise TokenError(known.format(token=token_label)) from exc
        detail = f": {exc}" if str(exc) else ""
        raise TokenError(
            f"token {token_label} failed {doing} ({type(exc).__name__}{detail})"
        ) from exc
