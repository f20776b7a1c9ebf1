"""``rps-service``: the daemon, its checks, and the admin commands (:mod:`rps_service.cli.main`)."""

from rps_service.cli.main import main

__all__ = ["main"]
