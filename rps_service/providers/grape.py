"""Gigaset GRAPE REST v1: the SRAPS protocol under Gigaset's name.

The protocol is the SRAPS family's (:mod:`rps_service.providers.sraps`: Hawk, the settings
catalogue, ``PUT``/``DELETE`` of ``…/endpoints/{mac}``); this module states GRAPE's facts:

* the provisioning URL goes in the catalogue setting ``ProvisioningServer``; entries are
  matched by ``param_name`` alone (no public client shows a ``section`` on them);
* the endpoint collection is the one the company's ``links.endpoints`` names (token →
  company → endpoints, as the one public client does);
* no catalogue setting is known to carry an HTTP login to the phone, so GRAPE devices get a
  URL key instead (:attr:`~rps_service.access.AccessMode.URL_KEY`): the URL itself is the
  phone's password at ``/ztprov/``, and nothing can leave a phone with a URL and no login;
* the phones (Gigaset IP PRO desk phones, Snom hardware) are the ``snom`` family at
  ``/ztprov/``;
* how a token object shows a key's Role is not known for GRAPE: a token without a ``role``
  field is not refused at the Test (an explicit empty or ``none`` Role still is);
* no public GRAPE client removes, looks up or lists devices: the endpoint's ``DELETE``
  (a 404 counting as removed) and ``GET`` and the collection's ``GET`` are SRAPS's, a
  guess that rps.log names once (``Relying on a guess.``) when first relied on.
"""

from __future__ import annotations

from rps_service.access import AccessMode
from rps_service.providers.section import BaseUrl
from rps_service.providers.sraps import SrapsProvider, SrapsSettings


class GrapeSettings(SrapsSettings):
    """``[gigaset-grape]``: the GRAPE REST API and the master API keys."""

    api_url: BaseUrl = "https://api.grape.gigaset.net/api/v1/"


class GrapeProvider(SrapsProvider):
    """Gigaset GRAPE (Gigaset Redirect and Provisioning Environment)."""

    name = "gigaset-grape"
    label = "Gigaset"
    service = "GRAPE"
    vendor = "Gigaset"
    settings_class = GrapeSettings
    access = AccessMode.URL_KEY
    url_setting = "ProvisioningServer"
    user_setting = None
    pass_setting = None
    catalogue_section = None
    endpoints_from_links = True
    role_absent_means_none = False
    calls_guessed = True
    phones_guess = ("Gigaset IP PRO phones sent by GRAPE ask for Snom's file names and read "
                    "Snom's settings XML (they are Snom hardware)")
