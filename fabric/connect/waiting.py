"""Waiting for a connector to reach a state, as Connect reports it.

Connect's status lags behind requests: right after a config change or a restart it may still
report the previous generation's tasks, RUNNING or FAILED. The waiter therefore counts a state
only once it holds, and the tasks run the config just sent.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

from fabric.connect.masking import Masker
from fabric.connect.rest import ConnectClient
from fabric.connect.status import STOPPED, ConnectorStatus
from fabric.errors import ConnectorFailedError


@dataclass(frozen=True)
class Timing:
    """``timeout_s`` bounds every wait; ``settle_s`` is how long a state must hold after a
    change; ``grace_s`` how long a FAILED from before a change may linger; ``poll_s`` the pace."""

    timeout_s: float
    poll_s: float = 0.25
    settle_s: float = 2.0
    grace_s: float = 5.0


class StateWaiter:
    def __init__(self, client: ConnectClient, masker: Masker, timing: Timing) -> None:
        self._client = client
        self._masker = masker
        self.timing = timing

    def status(self, name: str) -> ConnectorStatus:
        """The connector's and its tasks' states (traces masked); unregistered is an answer."""
        doc = self._client.status(name)
        if doc is None:
            return ConnectorStatus.missing(name)
        return ConnectorStatus.from_json(name, doc, self._masker)

    def wait(
        self,
        name: str,
        want: str,
        *,
        changed: bool,
        desired: Mapping[str, str] | None = None,
    ) -> ConnectorStatus:
        """Poll until the connector and all its tasks are in ``want``.

        After a change (``changed``) the state must hold for ``settle_s``, tasks must run
        ``desired`` (when given), and a FAILED counts once a non-failed state has been seen or the
        grace period is over: until then it may be the previous generation's. Waiting for STOPPED
        ignores failures, since a failed connector can be stopped.

        Raises :class:`ConnectorFailedError` with the masked traces, or on timeout.
        """
        t = self.timing
        settle_s = t.settle_s if changed else 0.0
        start = time.monotonic()
        stable_since: float | None = None
        seen_healthy = not changed
        while True:
            status = self.status(name)
            now = time.monotonic()
            if not status.failed or want == STOPPED:
                seen_healthy = True
            elif seen_healthy or now - start >= t.grace_s:
                raise ConnectorFailedError(self.failure_message(status))
            if self._reached(status, want, desired):
                stable_since = now if stable_since is None else stable_since
                if now - stable_since >= settle_s:
                    return status
            else:
                stable_since = None
            if now - start >= t.timeout_s:
                raise ConnectorFailedError(
                    f"connector {name} did not reach {want} within {t.timeout_s:g}s: "
                    f"{status.summary()}; see `fabric stack logs connect`"
                )
            time.sleep(t.poll_s)

    def failure_message(self, status: ConnectorStatus) -> str:
        name = status.name
        report = "\n".join(f"  {line}" for line in status.failure_report().splitlines())
        return self._masker.text(
            f"connector {name} failed:\n{report}\n"
            f"full traces: `fabric connectors status --json {name}`; worker log: "
            f"`fabric stack logs connect`; once the cause is fixed: "
            f"`fabric connectors restart {name}`"
        )

    def _reached(
        self, status: ConnectorStatus, want: str, desired: Mapping[str, str] | None
    ) -> bool:
        if want == STOPPED:
            return status.state == STOPPED
        if not status.is_all(want):
            return False
        if desired is None:
            return True
        # A task still configured with an older value belongs to the previous generation.
        tasks = self._client.tasks(status.name) or []
        return all(
            t.get("config", {}).get(key, value) == value
            for t in tasks
            for key, value in desired.items()
        )
