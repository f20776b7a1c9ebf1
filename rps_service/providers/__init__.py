"""Vendor redirection services, by name (:mod:`rps_service.providers.registry`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx

from rps_service.providers.protocol import CredentialSource, Provider, RequestObserver
from rps_service.providers.registry import PROVIDERS
from rps_service.providers.vendor import ProviderContext

if TYPE_CHECKING:  # config imports the registry: no import of config at run time
    from rps_service.config import Settings


def build_providers(
    settings: Settings,
    creds: CredentialSource,
    transport: httpx.AsyncBaseTransport,
    *,
    observe: RequestObserver | None = None,
) -> dict[str, Provider]:
    """The enabled providers, ready to use; ``observe`` is told of every vendor request."""
    context = ProviderContext(mode=settings.general.mode, retry_cap=settings.general.retry_cap,
                              credentials=creds, transport=transport, observe=observe)
    return {
        name: cls(settings.providers[name], context)
        for name, cls in PROVIDERS.items()
        if settings.providers[name].enabled
    }
