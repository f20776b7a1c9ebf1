"""Keep the ``mohawk`` Hawk library's DEBUG output out of every log, and its cost away.

Both sides of Hawk use mohawk: the SRAPS-family providers to sign, the sandbox to verify.
Neither may depend on the other, so the one setting they share lives here.
"""

from __future__ import annotations

import logging

import mohawk.base
import mohawk.util


class _Repr:
    pformat = staticmethod(repr)


def silence_mohawk_debug() -> None:
    """Raise mohawk's logger to INFO and make its never-emitted DEBUG messages cheap.

    mohawk logs the payload it hashes at DEBUG; payloads carry device passwords, so that
    output must never reach a log, even at DEBUG. It also builds those messages with
    ``pprint.pformat`` before its logger drops them (most of the CPU of a verification), so
    a plain ``repr`` does for them.
    """
    logging.getLogger("mohawk").setLevel(logging.INFO)
    for module in (mohawk.base, mohawk.util):
        if hasattr(module, "pprint"):
            setattr(module, "pprint", _Repr)  # noqa: B010 - a module attribute, not ours
