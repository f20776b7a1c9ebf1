"""The tenant's provisioning URL as a file URL for phones that are given one whole URL.

Snom phones take a folder and name their files themselves; Panasonic and Auerswald phones
are given the URL of one file and their credentials only inside it. :func:`file_url` turns
the tenant's ``prov_url`` into that: a ``prov_url`` ending in ``/`` (or with no file name)
gets the family's file name appended, one that names a file or holds a MAC placeholder is
kept, and the tenant's credentials become the URL's user information (percent-encoded).
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import quote, urlsplit


def file_url(prov_url: str, user: str, password: str, file_name: str,
             placeholders: Iterable[str]) -> str:
    """``prov_url`` as the phone's file URL, with ``user:password@`` before the host."""
    parts = urlsplit(prov_url)
    path = parts.path
    named = "." in path.rsplit("/", 1)[-1]
    if not named and not any(p in prov_url for p in placeholders):
        path = (path if path.endswith("/") else path + "/") + file_name
    netloc = parts.netloc
    if user and "@" not in netloc:
        netloc = f"{quote(user, safe='')}:{quote(password, safe='')}@{netloc}"
    return parts._replace(netloc=netloc, path=path).geturl()
