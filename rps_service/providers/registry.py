"""Every vendor provider by name: the one list that rps.ini, the API and the sandbox follow.

Adding a vendor is its module plus one line here. The order is the order of the sections
in documentation and of ``rps-service check-config``'s output.
"""

from __future__ import annotations

from rps_service.providers.auerswald import AuerswaldProvider
from rps_service.providers.fanvil import FanvilProvider
from rps_service.providers.gigaset import GigasetProvider
from rps_service.providers.grandstream import GrandstreamProvider
from rps_service.providers.grape import GrapeProvider
from rps_service.providers.panasonic import PanasonicProvider
from rps_service.providers.poly import PolyProvider
from rps_service.providers.snom import SnomProvider
from rps_service.providers.snom_xmlrpc import SnomXmlRpcProvider
from rps_service.providers.vendor import VendorProvider
from rps_service.providers.yealink import YealinkProvider
from rps_service.providers.yealink_rps import YealinkRpsProvider
from rps_service.providers.yealink_xmlrpc import YealinkXmlrpcProvider

PROVIDERS: dict[str, type[VendorProvider]] = {
    cls.name: cls
    for cls in (
        SnomProvider,
        YealinkProvider,
        PolyProvider,
        GrandstreamProvider,
        FanvilProvider,
        SnomXmlRpcProvider,
        GigasetProvider,
        GrapeProvider,
        YealinkRpsProvider,
        PanasonicProvider,
        YealinkXmlrpcProvider,
        AuerswaldProvider,
    )
}
