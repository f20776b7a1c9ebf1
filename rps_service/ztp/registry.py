"""Every phone family ``/ztprov/`` serves, by the name providers give as ``phone_family``."""

from __future__ import annotations

from rps_service.ztp.auerswald import AuerswaldFamily
from rps_service.ztp.family import PhoneFamily
from rps_service.ztp.fanvil import FanvilFamily
from rps_service.ztp.gigaset import GigasetFamily
from rps_service.ztp.panasonic import PanasonicFamily
from rps_service.ztp.poly import PolyFamily
from rps_service.ztp.snom import SnomFamily
from rps_service.ztp.yealink import YealinkFamily

FAMILIES: dict[str, PhoneFamily] = {
    family.name: family
    for family in (
        SnomFamily(),
        PanasonicFamily(),
        AuerswaldFamily(),
        YealinkFamily(),
        PolyFamily(),
        GigasetFamily(),
        FanvilFamily(),
    )
}
