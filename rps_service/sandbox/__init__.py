"""A local SRAPS-compatible server (Snom REST API v1), as strict as the real one.

For offline trials (``rps-service sandbox``), integration tests and benchmarks. See
:mod:`rps_service.sandbox.state` for the seeded world and the switches,
:mod:`rps_service.sandbox.app` for the request pipeline and
:mod:`rps_service.sandbox.control` for the ``/_sandbox/`` control API.
"""

from .app import create_app
from .hawk import HawkError, verify
from .runner import RunningSandbox, start_sandbox
from .state import (
    ADMIN_ROLE,
    DEMO_COMPANY_ID,
    DEMO_KEY_ID,
    DEMO_SECRET,
    GLOBAL_SETTING_SERVER_UUID,
    HTTP_CLIENT_PASS_UUID,
    HTTP_CLIENT_USER_UUID,
    NOROLE_KEY_ID,
    NOROLE_SECRET,
    OTHER_COMPANY_ID,
    OTHER_KEY_ID,
    OTHER_SECRET,
    SETTING_SERVER_UUID,
    TAKEN_MAC,
    ApiKey,
    Company,
    RequestRecord,
    SandboxState,
    Setting,
    setting_uuid,
)

__all__ = [
    "ADMIN_ROLE",
    "DEMO_COMPANY_ID",
    "DEMO_KEY_ID",
    "DEMO_SECRET",
    "GLOBAL_SETTING_SERVER_UUID",
    "HTTP_CLIENT_PASS_UUID",
    "HTTP_CLIENT_USER_UUID",
    "NOROLE_KEY_ID",
    "NOROLE_SECRET",
    "OTHER_COMPANY_ID",
    "OTHER_KEY_ID",
    "OTHER_SECRET",
    "SETTING_SERVER_UUID",
    "TAKEN_MAC",
    "ApiKey",
    "Company",
    "HawkError",
    "RequestRecord",
    "RunningSandbox",
    "SandboxState",
    "Setting",
    "create_app",
    "setting_uuid",
    "start_sandbox",
    "verify",
]
