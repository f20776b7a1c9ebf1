"""rps-service: zero-touch provisioning daemon for IP-PBX systems."""

__version__ = "0.1.0"
