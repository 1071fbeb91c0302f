"""The broker's side of an agent's key rotation: certify new keys, revoke the old certificate.

A rekey request travels under the pair key of the certificate it replaces. Once the new
certificate is issued the broker's pair key with the agent changes, so a retransmission
whose answer was lost still arrives under the old one: for ``rekey`` alone the broker
also accepts the pair key of the certificate just replaced, and answers it with the
same new certificate (idempotent, like enrollment).
"""

from __future__ import annotations

from protocol import topics
from protocol.broker_books import REKEY_ROOM, REKEYS_LISTED_PER_ACCOUNT, Account, certificate_of, ms
from protocol.broker_events import CertificateRekeyed, CertificateRevoked
from protocol.broker_redemption import BrokerRedemption
from protocol.codec import encode
from protocol.credentials import issue_certificate
from protocol.crypto import MacKey, pair_key, weak_key_reason
from protocol.envelope import Auth, Parsed, verify_mac
from protocol.errors import AuthenticationError, RekeyError
from protocol.messages import Certificate, Rekeyed, RekeyRequest
from protocol.rekey import check_rekey_request


class BrokerRekey(BrokerRedemption):
    """Rekey requests on top of the books and redemption; ``BrokerCore`` adds the rest."""

    @property
    def issuer_key(self) -> bytes:
        """What certificates name as their key: nothing while the first key signs."""
        return self.identity.sign_key if self.trusted.statements else b""

    def new_certificate(
        self, account: Account, sign_key: bytes, agree_key: bytes, now: float
    ) -> tuple[Certificate, bytes]:
        """A certificate for ``account``'s keys, the next serial, signed: enrollment and rekey."""
        now_ms = ms(now)
        certificate = Certificate(
            serial=self._next_serial,
            subject=account.name,
            role=account.role,
            sign_key=sign_key,
            agree_key=agree_key,
            credit_limit=account.credit_limit,
            currency=account.currency,
            not_before=now_ms,
            not_after=now_ms + int(self.policy.certificate_lifetime * 1000),
            issuer=self.account,
            issuer_key=self.issuer_key,
        )
        return certificate, issue_certificate(self.identity, certificate)

    def rekey_key(self, parsed: Parsed, account: Account) -> MacKey:
        """The pair key a ``rekey`` came under: the current one, or the one just replaced."""
        if not account.agree_key:
            raise AuthenticationError
        current = self.pair_key_with(account.name, account.agree_key)
        if not account.previous_agree_key:
            return current
        topic = topics.inbox(self.account, account.name)
        try:
            verify_mac(parsed, topic, current)
        except AuthenticationError:
            previous = pair_key(
                self.identity, self.account, account.previous_agree_key, account.name
            )
            return MacKey(previous)
        return current

    def rekey(self, parsed: Parsed, request: RekeyRequest, key: MacKey, now: float) -> None:
        """Certify the new keys and revoke the old certificate, in one ledger transaction."""
        account = self.accounts[parsed.header.sender]
        new_keys = (request.sign_key, request.agree_key)
        if request.serial == account.previous_serial and new_keys == (
            account.sign_key,
            account.agree_key,
        ):
            # A retransmission whose answer was lost: the same certificate again.
            check_rekey_request(request, account.name, self.account, account.previous_sign_key)
            self._send_rekeyed(parsed, account.certificate, key, now)
            return
        if request.serial != account.serial:
            raise RekeyError(f"certificate {request.serial} is not this account's current one")
        if account.serial in self.revoked:
            raise RekeyError(f"certificate {account.serial} is revoked")
        old = certificate_of(account.certificate)
        now_ms = ms(now)
        if now_ms > old.not_after:
            raise RekeyError(f"certificate {account.serial} has expired")
        if new_keys == (account.sign_key, account.agree_key) or request.sign_key == old.sign_key:
            raise RekeyError("the new keys are the ones certified now")
        if (reason := weak_key_reason(request.sign_key, request.agree_key)) is not None:
            raise RekeyError(f"weak key: {reason}")
        check_rekey_request(request, account.name, self.account, account.sign_key)
        # The old certificate goes on the revocation list for the rest of its life: a rekey
        # may not crowd out revocations that protect someone (docs/PROTOCOL.md 11.10).
        if self.listed_of(account.name, now) >= REKEYS_LISTED_PER_ACCOUNT:
            raise RekeyError(
                f"{REKEYS_LISTED_PER_ACCOUNT} earlier certificates of this account are still on"
                " the revocation list; rekey again when one has expired"
            )
        if len(self.listed_revocations(now)) >= REKEY_ROOM:
            raise RekeyError("the broker's revocation list has no room for rekeys now")
        certificate, signed = self.new_certificate(
            account, request.sign_key, request.agree_key, now
        )
        old_serial = account.serial
        self._record(
            CertificateRekeyed(
                at=now_ms,
                account=account.name,
                old_serial=old_serial,
                serial=certificate.serial,
                certificate=signed,
                request=encode(request),
            )
        )
        self._record(
            CertificateRevoked(at=now_ms, account=account.name, serial=old_serial, reason="rekeyed")
        )
        self.publish_revocations(now)
        self._send_rekeyed(parsed, signed, key, now)

    def _send_rekeyed(self, parsed: Parsed, certificate: bytes, key: MacKey, now: float) -> None:
        header = parsed.header
        body = Rekeyed(certificate)
        self.send(header.sender, body, now, auth=Auth.PAIR, key=key, corr=header.corr)
