"""The event API (docs/api.md): :mod:`rps_service.api.app` builds it."""
