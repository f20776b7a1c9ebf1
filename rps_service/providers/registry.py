"""Every vendor provider by name: the one list that rps.ini, the API and the sandbox follow.

Adding a vendor is its module plus one line here. The order is the order of the sections
in documentation and of ``rps-service check-config``'s output.
"""

from __future__ import annotations

from rps_service.providers.grandstream import GrandstreamProvider
from rps_service.providers.snom import SnomProvider
from rps_service.providers.vendor import VendorProvider
from rps_service.providers.yealink_rps import YealinkRpsProvider
from rps_service.providers.yealink_xmlrpc import YealinkXmlrpcProvider

PROVIDERS: dict[str, type[VendorProvider]] = {
    cls.name: cls
    for cls in (
        SnomProvider,
        GrandstreamProvider,
        YealinkXmlrpcProvider,
        YealinkRpsProvider,
    )
}
