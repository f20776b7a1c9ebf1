"""Vendor redirection services, by name."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from rps_service.config import Settings
from rps_service.providers.base import CredentialSource, Provider

ProviderFactory = Callable[[Settings, CredentialSource, httpx.AsyncClient], Provider]


def _snom(settings: Settings, creds: CredentialSource, client: httpx.AsyncClient) -> Provider:
    from rps_service.providers.snom import SnomProvider

    return SnomProvider(settings, creds, client)


#: name → (is it enabled in these settings?, factory)
REGISTRY: dict[str, tuple[Callable[[Settings], bool], ProviderFactory]] = {
    "snom": (lambda s: s.snom.enabled, _snom),
}


def build_providers(
    settings: Settings, creds: CredentialSource, client: httpx.AsyncClient
) -> dict[str, Provider]:
    """The enabled providers, ready to use."""
    return {
        name: factory(settings, creds, client)
        for name, (enabled, factory) in REGISTRY.items()
        if enabled(settings)
    }
