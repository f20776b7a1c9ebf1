"""Every phone family ``/ztprov/`` serves, by the name providers give as ``phone_family``."""

from __future__ import annotations

from rps_service.ztp.family import PhoneFamily
from rps_service.ztp.snom import SnomFamily
from rps_service.ztp.yealink import YealinkFamily

FAMILIES: dict[str, PhoneFamily] = {
    family.name: family
    for family in (
        SnomFamily(),
        YealinkFamily(),
    )
}
