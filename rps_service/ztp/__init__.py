"""The phone's side of zero-touch provisioning: ``/ztprov/`` (docs/phone-side.md)."""

from __future__ import annotations

from rps_service.ztp.app import ZtpListener

__all__ = ["ZtpListener"]
