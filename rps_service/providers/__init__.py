"""Vendor redirection services: one module per vendor on a shared skeleton (:mod:`.vendor`).

Which vendors there are, with their phones' family and emulator, is the manifest
:mod:`rps_service.vendors`.
"""
