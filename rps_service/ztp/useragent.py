"""What a Snom phone says about itself in its User-Agent: model, firmware and MAC.

A D785 on firmware 10.1 sends, for example::

    Mozilla/4.0 (compatible; snomD785-SIP 10.1.33.33 2010.12-00004-g6f0b1a0 000413922D24
    SXM:0 UXM:0)

Older firmware omits the MAC, DECT bases and new models vary the punctuation, and anything
can arrive from the Internet, so every part is optional and the parser never raises.

Other families write the MAC with separators (a Yealink sends ``Yealink SIP-T46U 108.86.0.20
80:5e:c0:12:34:56``); such a MAC is taken too, so the listener can match the path against
it and find the device of a file name that carries no MAC. Model and firmware are read by
each family's own parser (:meth:`rps_service.ztp.family.PhoneFamily.parse_user_agent`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

SNOM_OUI = "000413"
_MAX_LENGTH = 1024  # a longer header is not a phone's; do not spend time on it
_MODEL = re.compile(r"\bsnom[-_]?([A-Za-z0-9]{1,32})(?![A-Za-z0-9])", re.I)
_FIRMWARE = re.compile(r"(?<![\w.])(\d{1,6}(?:\.\d{1,6}){1,5})\b")
_HEX12 = re.compile(r"\b[0-9A-Fa-f]{12}\b")
# Six octets joined by ':' or '-' (one separator throughout), not part of a longer run.
_SEPARATED_MAC = re.compile(
    r"(?<![0-9A-Fa-f:-])[0-9A-Fa-f]{2}([:-])[0-9A-Fa-f]{2}(?:\1[0-9A-Fa-f]{2}){4}(?![0-9A-Fa-f:-])")


@dataclass(frozen=True)
class UserAgent:
    """The parts of a User-Agent that were recognised (``None`` where not)."""

    model: str | None = None
    firmware: str | None = None
    mac: str | None = None  # 12 upper-case hex digits


def parse_user_agent(header: str | None) -> UserAgent:
    """Model (after ``snom``), firmware (the dotted version after it) and MAC (a 12-hex token).

    The MAC is the first 12-hex token with Snom's OUI ``000413``, else the first MAC written
    with separators (``80:5e:c0:12:34:56``), else the first 12-hex token that is not all
    decimal digits (a build number must never be taken for a MAC: a wrong MAC makes the
    phone's request refused; six separated octets are no build number).
    """
    if not header:
        return UserAgent()
    text = header[:_MAX_LENGTH]
    model_match = _MODEL.search(text)
    model = model_match.group(1) if model_match else None
    if model is not None and model.upper() == "SIP":
        model = None
    # The firmware is the version after the model; another product's version is not one.
    firmware_match = _FIRMWARE.search(text, model_match.end()) if model_match else None
    return UserAgent(
        model=model,
        firmware=firmware_match.group(1) if firmware_match else None,
        mac=_mac(text),
    )


def _mac(text: str) -> str | None:
    tokens = [str(token).upper() for token in _HEX12.findall(text)]
    for token in tokens:
        if token.startswith(SNOM_OUI):
            return token
    separated = _SEPARATED_MAC.search(text)
    if separated is not None:
        return re.sub(r"[:-]", "", separated.group(0)).upper()
    for token in tokens:
        if not token.isdigit():
            return token
    return None
