"""What the small XML-RPC redirection services share (Snom legacy, Panasonic, Auerswald).

Each takes HTTP Basic with an account's username and password, carries nothing to the phone
but a URL (so the URL holds the device's key, :class:`~rps_service.access.AccessMode`
``URL_KEY``) and answers in its own small dialect of XML-RPC. This module holds what they
have in common: the ``[section]`` keys, the Basic login, the device URL (the key segment
and, for vendors whose phones ask for a named file, the file name with the vendor's own MAC
placeholder), and one call that turns a fault into a value the vendor module reads
(:class:`RpcFault`), every vendor text cleaned of passwords and URL keys before it can reach
a log.
"""

from __future__ import annotations

from typing import Any, ClassVar
from urllib.parse import urlsplit

import httpx
from pydantic import SecretStr

from rps_service.access import AccessMode, mask_url_keys
from rps_service.providers.errors import http_error
from rps_service.providers.protocol import Failure, ProviderError
from rps_service.providers.section import ProviderSettings
from rps_service.providers.vendor import Account
from rps_service.providers.xmlrpc import RpcFault, XmlRpcProvider

#: What a Test of these services cannot see: only an add shows it.
NOT_VERIFIED = ("whether the account may redirect phones is not verified: it shows only at "
                "the first add")


class RpcRedirectSettings(ProviderSettings):
    """A section with the account's ``username`` and ``password`` (HTTP Basic)."""

    credential_keys: ClassVar[tuple[str, ...]] = ("username", "password")

    username: str = ""
    password: SecretStr = SecretStr("")


class RpcRedirectProvider(XmlRpcProvider):
    """An XML-RPC redirection service with Basic auth that carries only a URL."""

    access = AccessMode.URL_KEY
    #: Appended to the device's URL (after its key segment): the file the phone asks for,
    #: written with the placeholder the vendor (or the phone) replaces by the MAC. Empty:
    #: the URL stays a folder and the phone names the file itself (Snom).
    file_name: ClassVar[str] = ""
    #: How the vendor writes a MAC: 12 hex digits in this case.
    upper_mac: ClassVar[bool] = True

    async def device_url(self, server: int, url_key: str | None = None) -> str:
        url = await super().device_url(server, url_key)
        if not (url and url_key and self.file_name):
            return url
        parts = urlsplit(url)
        return parts._replace(path=parts.path + self.file_name).geturl()

    def vendor_mac(self, mac: str) -> str:
        """The MAC as the vendor's calls take it."""
        return mac.upper() if self.upper_mac else mac.lower()

    def classify(self, response: httpx.Response, text: str, account: Account
                 ) -> ProviderError | None:
        """The shared HTTP rules, on a text without URL keys (an error page may quote
        the request)."""
        masked = mask_url_keys(text)
        if masked == text:
            return None
        return http_error(response, text=masked, bad_login_hint=self.bad_login_hint(),
                          now=self.clock())

    def unexpected(self, method: str, answer: Any, account: Account) -> ProviderError:
        """A permanent error for an answer the vendor's documented shapes do not allow."""
        if isinstance(answer, RpcFault):
            return ProviderError(f"{self.service} answered {method} with {answer}",
                                 Failure.PERMANENT)
        shown = self.vendor_text(repr(answer), account)
        return ProviderError(f"{self.service} answered {method} with an unexpected "
                             f"result: {shown}", Failure.PERMANENT)

    def refused_login(self, method: str, answer: Any, account: Account) -> ProviderError:
        """A Test call the vendor refused in XML-RPC terms (not with an HTTP 401)."""
        shown = str(answer) if isinstance(answer, RpcFault) else self.vendor_text(
            repr(answer), account)
        return ProviderError(f"{method} refused: {shown}", Failure.BAD_LOGIN,
                             hint=self.bad_login_hint())

    def accepted(self, account: Account, how: str) -> str:
        """The Test button's success text: ``how`` the login showed it works, and what the
        Test cannot know (no call tells it without registering a phone)."""
        return (f"{self.service} accepted the login {account.text('username')} ({how}); "
                f"{NOT_VERIFIED}")

    def unconfirmed_login(self, method: str, answer: Any, account: Account) -> ProviderError:
        """The Test's call answered, but not as the vendor answers a working login: the
        Test fails, quoting the answer."""
        shown = str(answer) if isinstance(answer, RpcFault) else self.vendor_text(
            repr(answer), account)
        return ProviderError(f"{self.service} answered the Test's {method} with {shown}: "
                             "the login is not confirmed", Failure.PERMANENT,
                             hint=self.bad_login_hint())

