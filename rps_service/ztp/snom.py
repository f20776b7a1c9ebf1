"""Snom phones (and Gigaset IP PRO, Snom hardware): ``snom<MODEL>-<MAC>.htm`` and the XML
settings file of docs/phone-side.md (:mod:`rps_service.ztp.snom_file`)."""

from __future__ import annotations

from rps_service.models import Device, ServerProvisioning
from rps_service.ztp.family import PhoneFamily
from rps_service.ztp.snom_file import parse_file_name, render_settings


class SnomFamily(PhoneFamily):
    """``snom<MODEL>.htm`` then ``snom<MODEL>-<MAC>.htm`` (or the bare MAC for a ``{mac}``
    URL); the answer is the ``<settings><phone-settings>`` XML with ``setting_server``,
    ``http_client_user`` and ``http_client_pass``."""

    name = "snom"
    content_type = "application/xml"

    def file_mac(self, name: str) -> str | None:
        return parse_file_name(name).mac

    def render(self, provisioning: ServerProvisioning, device: Device) -> bytes:
        return render_settings(provisioning.prov_url, provisioning.http_user,
                               provisioning.http_password)

    def sample_request(self, mac: str, model: str) -> tuple[str, str]:
        agent = (f"Mozilla/4.0 (compatible; snom{model}-SIP 10.1.33.33 2010.12-00004-g6f0b1a0 "
                 f"{mac} SXM:0 UXM:0)")
        return f"snom{model}-{mac}.htm", agent
