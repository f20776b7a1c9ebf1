"""The phone's side of zero-touch provisioning: ``/ztprov/`` (SPEC §7)."""

from __future__ import annotations

from rps_service.ztp.app import ZtpListener

__all__ = ["ZtpListener"]
