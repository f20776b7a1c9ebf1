"""XML-RPC over the shared vendor HTTP client, for the vendors whose redirection is XML-RPC.

:class:`XmlRpcProvider` is the base of every XML-RPC vendor: the call signed with the
account's login (Basic unless a vendor says otherwise), a fault as an :class:`RpcFault`
whose text holds no secret, and the ``[boolean, value]`` answers read one way
(:func:`answer_of`).

Marshalling is Python's own :mod:`xmlrpc.client` (``dumps``/``loads``); the bytes go
through the provider's :class:`~rps_service.providers.http.VendorHttp` like every other
vendor request (rate limit, pause, lease, log line, metrics), signed by an ``httpx.Auth``
(usually Basic). A fault comes back as :class:`xmlrpc.client.Fault` for the vendor module
to classify; an answer that is not XML-RPC at all is a permanent error naming the service.
"""

from __future__ import annotations

import hashlib
import xmlrpc.client
from dataclasses import dataclass
from typing import Any
from xml.parsers.expat import ExpatError

import httpx

from rps_service import timeline
from rps_service.access import mask_url_keys
from rps_service.providers.errors import clean_text
from rps_service.providers.protocol import Failure, ProviderError
from rps_service.providers.vendor import Account, VendorProvider

XML = "text/xml"
#: Longest server name a Yealink-style RPS takes (Yealink's limit; Htek publishes none).
NAME_LIMIT = 20
MAX_ANSWER = 1_048_576  # an XML-RPC answer larger than this is not a redirection service's


async def call(provider: VendorProvider, account: Account, method: str, *params: Any,
               operation: str, mac: str = "-", auth: httpx.Auth | None = None,
               url: str | None = None) -> Any:
    """Call ``method(*params)`` at ``url`` (the provider's ``api_url``); its result.

    Raises :class:`xmlrpc.client.Fault` for an XML-RPC fault, :class:`ProviderError` for an
    HTTP error (classified by the provider) or an answer that does not parse.
    """
    body = xmlrpc.client.dumps(params, method, encoding="utf-8").encode("utf-8")
    response = await provider.request(
        account, "POST", url or provider.settings.api_url, operation=operation, mac=mac,
        content=body, content_type=XML, auth=auth, accept=XML, rpc_method=method)
    provider.expect(response, account)
    if len(response.content) > MAX_ANSWER:
        raise ProviderError(f"{provider.service} answered {method} with "
                            f"{len(response.content)} bytes", Failure.PERMANENT)
    try:
        result, _ = xmlrpc.client.loads(response.content, use_builtin_types=True)
    except xmlrpc.client.Fault as fault:
        timeline.vendor_code(f"fault {fault.faultCode}")
        raise
    except (ExpatError, xmlrpc.client.ResponseError, ValueError, TypeError, IndexError):
        raise ProviderError(f"{provider.service} answered {method} with no XML-RPC result "
                            f"({response.status_code})", Failure.PERMANENT,
                            status=response.status_code) from None
    return result[0] if len(result) == 1 else list(result)


def answer_of(result: Any) -> tuple[bool, str] | None:
    """``(ok, text)`` from a ``[boolean, value]`` answer (booleans as 1/0 too), else None."""
    if not isinstance(result, list) or not result:
        return None
    first = result[0]
    if isinstance(first, bool):
        ok = first
    elif isinstance(first, int | str) and str(first).strip().lower() in ("1", "0", "true",
                                                                           "false"):
        ok = str(first).strip().lower() in ("1", "true")
    else:
        return None
    text = result[1] if len(result) > 1 else ""
    return ok, (text if isinstance(text, str) else str(text))


def server_name(account: str, url: str) -> str:
    """The name of a Yealink-style RPS *server* (a named URL) for ``url`` in ``account``:
    stable, 20 characters, unlikely to be any other customer's (Yealink's names are unique
    across all customers)."""
    digest = hashlib.sha256(f"{account}\0{url}".encode()).hexdigest()
    return f"rps-{digest[:NAME_LIMIT - 4]}"


@dataclass(frozen=True)
class RpcFault:
    """An XML-RPC fault the vendor answered (its text with every secret masked)."""

    code: int
    text: str

    def __str__(self) -> str:
        return f"fault {self.code}: {self.text}" if self.text else f"fault {self.code}"


class XmlRpcProvider(VendorProvider):
    """A vendor whose API is XML-RPC: the call, the login, faults and texts, written once."""

    def rpc_auth(self, account: Account) -> httpx.Auth:
        """How a call is signed: Basic with the account's username and password."""
        return httpx.BasicAuth(account.text("username"), account.text("password"))

    async def rpc(self, account: Account, method: str, *params: Any, operation: str,
                  mac: str = "-", secrets: tuple[str, ...] = ()) -> Any:
        """``method(*params)``'s result, or an :class:`RpcFault` when the vendor answered
        with a fault. HTTP errors (401, 429, 5xx) raise the shared classification."""
        try:
            return await call(self, account, method, *params, operation=operation, mac=mac,
                              auth=self.rpc_auth(account))
        except xmlrpc.client.Fault as fault:
            code = fault.faultCode if isinstance(fault.faultCode, int) else -1
            return RpcFault(code, self.vendor_text(str(fault.faultString), account, secrets))

    def vendor_text(self, text: str, account: Account, secrets: tuple[str, ...] = ()) -> str:
        """A text the vendor sent, fit for rps.log: one short line, no password, no URL
        key (a vendor may quote the URL it refused, and the URL holds the key)."""
        # Keys first: clean_text cuts long texts, and half a key must not survive.
        return clean_text(mask_url_keys(text), (*account.secrets, *secrets))
