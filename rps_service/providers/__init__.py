"""Vendor redirection services, by name."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from rps_service.config import Settings
from rps_service.providers.base import CredentialSource, Provider, RequestObserver

ProviderFactory = Callable[
    [Settings, CredentialSource, httpx.AsyncBaseTransport, RequestObserver | None], Provider
]


def _snom(
    settings: Settings,
    creds: CredentialSource,
    transport: httpx.AsyncBaseTransport,
    observe: RequestObserver | None,
) -> Provider:
    from rps_service.providers.snom import SnomProvider

    return SnomProvider(settings, creds, transport, observe=observe)


#: name → (is it enabled in these settings?, factory)
REGISTRY: dict[str, tuple[Callable[[Settings], bool], ProviderFactory]] = {
    "snom": (lambda s: s.snom.enabled, _snom),
}


def build_providers(
    settings: Settings,
    creds: CredentialSource,
    transport: httpx.AsyncBaseTransport,
    *,
    observe: RequestObserver | None = None,
) -> dict[str, Provider]:
    """The enabled providers, ready to use; ``observe`` is told of every vendor request."""
    return {
        name: factory(settings, creds, transport, observe)
        for name, (enabled, factory) in REGISTRY.items()
        if enabled(settings)
    }
