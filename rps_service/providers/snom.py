"""Snom SRAPS REST v1: point factory-reset Snom phones at our zero-touch provisioning URL.

The protocol is the SRAPS family's (:mod:`rps_service.providers.sraps`); this module states
Snom's facts. The phone gets ``setting_server`` (our URL) and its own ``http_client_user`` /
``http_client_pass`` from the ``phone-settings`` section of the catalogue.
"""

from __future__ import annotations

from rps_service.providers.section import BaseUrl
from rps_service.providers.sraps import SrapsProvider, SrapsSettings


class SnomSettings(SrapsSettings):
    """``[snom]``: the SRAPS REST API and the master API keys."""

    enabled: bool = True
    api_url: BaseUrl = "https://secure-provisioning.snom.com/api/v1/"


class SnomProvider(SrapsProvider):
    """Snom SRAPS (docs/vendors/snom.md)."""

    name = "snom"
    label = "Snom"
    service = "SRAPS"
    settings_class = SnomSettings
