"""``[webhooks]`` settings and the signature (docs/webhooks.md), without a network."""

from __future__ import annotations

import random
import re
import time
from pathlib import Path
from typing import Any

import pytest

from rps_service.config import WEBHOOK_TYPES, ConfigError, load_settings
from rps_service.store.outbox import Notice
from rps_service.webhooks import RETRY_CAP, Repeats, retry_delay, signature

ROOT = Path(__file__).resolve().parents[2]


def settings(tmp_path: Path, **webhooks: Any) -> Any:
    ini = tmp_path / "rps.ini"
    ini.write_text("[webhooks]\n" + "".join(f"{k} = {v}\n" for k, v in webhooks.items()))
    return load_settings(ini, env={}).webhooks


def doc_verify() -> Any:
    text = (ROOT / "docs" / "webhooks.md").read_text(encoding="utf-8")
    [code] = re.findall(r"```python\n(.*?)```", text, re.S)
    namespace: dict[str, Any] = {"__name__": "webhook_example"}
    exec(compile(code, "docs/webhooks.md", "exec"), namespace)  # noqa: S102 - our own doc
    return namespace["verify"]


def test_off_by_default_with_every_type(tmp_path: Path) -> None:
    hooks = settings(tmp_path)
    assert not hooks.enabled and hooks.events == WEBHOOK_TYPES
    assert (hooks.timeout, hooks.max_age, hooks.repeat_after) == (10.0, 24.0, 60.0)


def test_secret_is_masked_and_events_parsed(tmp_path: Path) -> None:
    hooks = settings(tmp_path, url="https://pbx.test/hook", secret="hush-1234",
                     events="phone.fetched, device.failed")
    assert hooks.enabled and hooks.events == ("phone.fetched", "device.failed")
    assert "hush-1234" not in repr(hooks) and "hush-1234" not in str(hooks)


@pytest.mark.parametrize(("values", "key", "reason"), [
    ({"url": "https://pbx.test/hook"}, "secret", "needs a secret"),
    ({"url": "pbx.test/hook", "secret": "x"}, "url", "http:// or https://"),
    ({"events": "device.added"}, "events", "unknown event 'device.added'"),
    ({"timeout": "0"}, "timeout", "greater than 0"),
    ({"max_age": "soon"}, "max_age", "number"),
    ({"repeat_after": "-1"}, "repeat_after", "greater than or equal to 0"),
    ({"retries": "3"}, "retries", "unknown key"),
])
def test_errors_name_file_section_and_key(tmp_path: Path, values: dict[str, str], key: str,
                                          reason: str) -> None:
    with pytest.raises(ConfigError) as caught:
        settings(tmp_path, **values)
    err = caught.value
    assert (err.file, err.section, err.key) == (str(tmp_path / "rps.ini"), "webhooks", key)
    assert reason in err.reason


def test_the_docs_receiver_accepts_our_signature_only() -> None:
    verify = doc_verify()
    body, now = b'{"id":"1","type":"device.registered"}', int(time.time())
    header = signature(b"s3", now, body)
    assert re.fullmatch(r"t=\d+,v1=[0-9a-f]{64}", header)
    assert verify(b"s3", header, body)
    assert not verify(b"s4", header, body)  # another secret
    assert not verify(b"s3", header, body + b" ")  # another body
    assert not verify(b"s3", signature(b"s3", now - 3600, body), body)  # replayed later
    assert not verify(b"s3", "garbage", body)


def test_backoff_doubles_to_its_cap_with_jitter() -> None:
    rng = random.Random(1)
    for attempts, ceiling in ((1, 1.0), (2, 2.0), (4, 8.0), (30, RETRY_CAP)):
        delays = [retry_delay(attempts, rng) for _ in range(50)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays)


def repeated(**changes: Any) -> Notice:
    values = {"type": "phone.fetched", "provider": "snom", "mac": "000413A00001", "server": 1,
              "status": "registered", "message": "f.htm fetched from 10.0.0.1 (model D717)"}
    return Notice(**{**values, **changes})


def test_a_repeat_is_told_again_only_after_the_window() -> None:
    now = [100.0]
    repeats = Repeats(60, clock=lambda: now[0])
    assert repeats.fresh(repeated())
    now[0] += 59.9
    assert not repeats.fresh(repeated())
    assert repeats.fresh(repeated(message="f.htm fetched from 10.0.0.2 (model D717)"))
    assert repeats.fresh(repeated(type="phone.refused"))
    assert repeats.fresh(repeated(mac="000413A00002"))
    now[0] += 0.1
    assert repeats.fresh(repeated())  # 60 s after it was told


def test_repeats_remember_a_bounded_number() -> None:
    now = [0.0]
    repeats = Repeats(60, limit=3, clock=lambda: now[0])
    for n in range(10):
        assert repeats.fresh(repeated(mac=f"M{n}"))
    assert len(repeats._told) == 3
    assert repeats.fresh(repeated(mac="M0"))  # forgotten: told again
    assert not repeats.fresh(repeated(mac="M9"))


def test_window_zero_tells_every_one() -> None:
    repeats = Repeats(0)
    assert all(repeats.fresh(repeated()) for _ in range(3))
