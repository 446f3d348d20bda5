"""The development Stripe as a process of the test session's own, and what a test asks of it."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time

import requests

# Any `sk_…` key is accepted by the development Stripe.
SECRET_KEY = "sk_test_localstripe"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class DevStripe:
    """A running development Stripe (`python -m devstripe`) on 127.0.0.1."""

    def __init__(self, base: str, process: subprocess.Popen | None = None) -> None:
        self.base = base
        self.process = process

    @classmethod
    def start(cls, timeout: float = 20.0) -> DevStripe:
        port = free_port()
        process = subprocess.Popen(  # noqa: S603 - our own module
            [sys.executable, "-m", "devstripe", "--port", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    process.kill()
                    raise RuntimeError("the development Stripe did not start") from None
                time.sleep(0.05)
        return cls(f"http://127.0.0.1:{port}", process)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)

    def request(self, method: str, path: str, form: dict[str, str] | None = None) -> bytes:
        resp = requests.request(
            method,
            self.base + path,
            data=form,
            headers={"Authorization": f"Bearer {SECRET_KEY}"},
            timeout=10,
        )
        resp.raise_for_status()
        return resp.content

    def clear(self) -> None:
        """Forget every object (webhook receivers stay)."""
        self.request("DELETE", "/_config/data")

    def violations(self) -> list[dict[str, str]]:
        """The requests the pinned API version would have refused since the last call,
        each with its method, path and what was wrong (and empties the list)."""
        found = json.loads(self.request("GET", "/_config/pinned/violations"))
        self.request("DELETE", "/_config/pinned/violations")
        return found

    def register_webhook(self, name: str, url: str, secret: str) -> None:
        """Deliver every event, signed with `secret`, to `url`."""
        self.request("POST", f"/_config/webhooks/{name}", {"url": url, "secret": secret})

    def authenticate_3ds(self, payment_intent_id: str, client_secret: str, success: bool) -> None:
        """What the customer does in Stripe's 3-D Secure step."""
        flag = "true" if success else "false"
        self.request(
            "POST",
            f"/v1/payment_intents/{payment_intent_id}/_authenticate?success={flag}",
            {"client_secret": client_secret},
        )


def fail_on_violations(found: list[dict[str, str]], where: str) -> None:
    """Fail the test when Stripe requests broke the pinned API version's parameters."""
    import pytest

    if found:
        lines = "\n".join(f"  {v['method']} {v['path']}: {v['violation']}" for v in found)
        pytest.fail(
            f"{where} sent Stripe requests the pinned API version refuses:\n{lines}",
            pytrace=False,
        )
