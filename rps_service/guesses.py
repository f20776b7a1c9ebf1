"""Guessed vendor and phone facts, said out loud.

Some of what a vendor module or a phone family relies on comes from no source at all (an
inference from a sibling protocol, or from a peer's reading of an answer that says nothing
more) or from a single one (a phone's User-Agent seen in one provisioning system's parser);
each vendor page in docs/vendors/ lists them. The first time a process relies on such a
fact, it logs one WARNING naming the guess, so an operator who sees an odd outcome knows
what to check with the vendor or on a phone; later uses stay quiet, as the guess does not
change while the process runs.

Both :mod:`rps_service.providers` and :mod:`rps_service.ztp` use it, so it sits below both.
"""

from __future__ import annotations

import threading

from rps_service.logs import get_logger

log = get_logger()

_said: set[tuple[str, str]] = set()
_lock = threading.Lock()


def rely_on_guess(component: str, guess: str) -> None:
    """Log ``Relying on a guess.`` for ``guess`` once per process (per ``component``)."""
    with _lock:
        if (component, guess) in _said:
            return
        _said.add((component, guess))
    log.warning("Relying on a guess", component=component, guess=guess)


def forget_guesses() -> None:
    """Say every guess again on its next use (tests; a process never needs it)."""
    with _lock:
        _said.clear()
