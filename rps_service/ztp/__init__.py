"""The phone's side of zero-touch provisioning: ``/ztprov/`` (docs/phone-side.md).

The listener is :mod:`rps_service.ztp.app`; each phone family has a module of its own.
"""
