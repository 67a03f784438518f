"""Connectors managed as data: validate, apply, diff, inspect and retire them by spec.

The library API behind ``fabric connectors``; scripts may use it directly::

    manager = ConnectorManager(ConnectClient(url, masker=masker), source_factory,
                               masker=masker, timing=Timing(timeout_s=120))
    result = manager.apply(spec)        # result.outcome: created | updated | unchanged

Every string this module returns or raises is masked (see :mod:`fabric.connect.masking`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from contextlib import closing
from dataclasses import dataclass
from enum import StrEnum

from fabric.connect.capture import (
    FieldErrors,
    TableInfo,
    capture_errors,
    captured_tables,
    publication_name,
    rule_errors,
    slot_name,
)
from fabric.connect.diff import ConfigDiff, diff_configs
from fabric.connect.masking import Masker
from fabric.connect.rest import ConnectClient
from fabric.connect.source import SlotDrop, SourceDatabase
from fabric.connect.spec import ConnectorSpec
from fabric.connect.status import PAUSED, RUNNING, STOPPED, ConnectorStatus, validation_errors
from fabric.connect.waiting import StateWaiter, Timing
from fabric.errors import (
    ConnectError,
    ConnectorInvalidError,
    SourceDatabaseError,
    SpecError,
)

log = logging.getLogger(__name__)

SourceFactory = Callable[[ConnectorSpec], SourceDatabase]


class ApplyOutcome(StrEnum):
    CREATED = "created"
    UPDATED = "updated"
    UNCHANGED = "unchanged"


@dataclass(frozen=True)
class Validation:
    """A spec that Connect, the fabric's rules and the source database all accept."""

    name: str
    captured: tuple[TableInfo, ...]


@dataclass(frozen=True)
class ApplyResult:
    name: str
    outcome: ApplyOutcome
    diff: ConfigDiff  # what was sent (empty when unchanged)
    status: ConnectorStatus  # RUNNING, or PAUSED/STOPPED when an operator left it so
    triggers_installed: tuple[str, ...]  # tables that got their truncate trigger just now


@dataclass(frozen=True)
class DeleteResult:
    """``slot_outcome`` and ``publication_dropped`` are ``None`` when they were kept."""

    name: str
    deleted: bool  # False: Connect did not know the connector
    offsets_reset: bool
    slot: str
    slot_outcome: SlotDrop | None
    publication: str
    publication_dropped: bool | None


class ConnectorManager:
    """Operations on connectors, against one Connect cluster and the specs' source databases.

    ``timing.timeout_s`` bounds every wait for a state (RUNNING, PAUSED, STOPPED) and for a
    replication slot to be released. After a change, RUNNING counts only once it has held for
    ``timing.settle_s`` and the tasks run the new config: Connect reports the old tasks' RUNNING
    until it has restarted them, and Debezium fails most misconfigurations within a second.
    """

    def __init__(
        self,
        client: ConnectClient,
        source_factory: SourceFactory,
        *,
        masker: Masker,
        timing: Timing,
    ) -> None:
        self._client = client
        self._source_factory = source_factory
        self._masker = masker
        self._timing = timing
        self._waiter = StateWaiter(client, masker, timing)
        self._plugins: set[str] | None = None
        self._learned: set[str] = set()  # connectors whose running config's secrets are known

    def validate(self, spec: ConnectorSpec) -> Validation:
        """Check ``spec`` without changing anything: the fabric's rules, Connect's validation
        (which tries the database connection), the source's readiness, and keyless tables.

        Raises :class:`ConnectorInvalidError` listing ``setting: error`` lines,
        :class:`SourceDatabaseError` when the database or the connector's role is not ready.
        """
        with closing(self._source_factory(spec)) as source:
            return self._validate(spec, source)

    def apply(self, spec: ConnectorSpec) -> ApplyResult:
        """Make Connect run ``spec``: validate, install the truncate triggers, send the config
        only if it differs from the running one, then wait until the connector and all its tasks
        are RUNNING. Idempotent: a second apply reports ``unchanged`` and writes nothing.

        Raises :class:`ConnectorFailedError` (with the masked task trace) when the connector fails
        or does not reach RUNNING within the timeout.
        """
        with closing(self._source_factory(spec)) as source:
            validation = self._validate(spec, source)
            installed = source.install_truncate_triggers(validation.captured)
            if spec.config.get("publication.autocreate.mode") == "disabled":
                source.align_publication(publication_name(spec.config), validation.captured)
            running = self._client.config(spec.name)
            if running is not None:
                self._masker.add_config(running)
                self._check_slot_matches_offsets(spec, source)
        desired = spec.request_config()
        diff = diff_configs(spec.name, running, desired, self._masker)
        if diff.empty:
            outcome = ApplyOutcome.UNCHANGED
        else:
            created = self._client.put_config(spec.name, spec.config)
            outcome = ApplyOutcome.CREATED if created else ApplyOutcome.UPDATED
        log.info("connector config applied name=%s outcome=%s", spec.name, outcome.value)
        status = self._await_target(spec.name, desired if not diff.empty else None)
        return ApplyResult(spec.name, outcome, diff, status, tuple(installed))

    def diff(self, spec: ConnectorSpec) -> ConfigDiff:
        """What ``apply`` would change: settings added, removed or changed (masked)."""
        self._masker.add_config(spec.config)
        running = self._client.config(spec.name)
        if running is not None:
            self._masker.add_config(running)
        return diff_configs(spec.name, running, spec.request_config(), self._masker)

    def status(self, name: str) -> ConnectorStatus:
        """The connector's and its tasks' states (traces masked); unregistered is an answer.

        The running config's secrets are learned first, so that a trace echoing a password that
        no local spec or setting knows is masked too.
        """
        if name not in self._learned:
            running = self._client.config(name)
            if running is not None:
                self._masker.add_config(running)
                self._learned.add(name)
        return self._waiter.status(name)

    def restart(self, name: str, *, only_failed: bool = False) -> ConnectorStatus:
        """Restart the connector and its tasks (only the failed ones with ``only_failed``), then
        wait until all are RUNNING."""
        current = self._registered(name)
        if current.state in (PAUSED, STOPPED):
            raise ConnectError(
                f"connector {name} is {current.state}; resume it instead: "
                f"`fabric connectors resume {name}`"
            )
        self._client.restart(name, include_tasks=True, only_failed=only_failed)
        log.info("connector restart requested name=%s only_failed=%s", name, only_failed)
        return self._waiter.wait(name, RUNNING, changed=True)

    def pause(self, name: str) -> ConnectorStatus:
        """Pause the connector and its tasks; Debezium keeps its slot, which then holds WAL."""
        self._registered(name)
        self._client.pause(name)
        log.info("connector pause requested name=%s", name)
        return self._waiter.wait(name, PAUSED, changed=False)

    def resume(self, name: str) -> ConnectorStatus:
        """Resume a PAUSED or STOPPED connector and wait until it is RUNNING."""
        self._registered(name)
        self._client.resume(name)
        log.info("connector resume requested name=%s", name)
        return self._waiter.wait(name, RUNNING, changed=True)

    def delete(
        self, name: str, *, spec: ConnectorSpec | None = None, drop_slot: bool = False
    ) -> DeleteResult:
        """Unregister the connector.

        Without ``drop_slot`` its replication slot, publication and Connect offsets stay, so a
        later apply resumes where it stopped; meanwhile the slot holds WAL on the source.

        With ``drop_slot`` it is retired for good, and slot and offsets are reset together (one
        without the other makes a later apply skip changes silently): the connector is stopped,
        its Connect offsets deleted, the connector deleted, then its slot (once no walsender holds
        it) and its publication dropped. The database, slot and publication come from the running
        config, or from ``spec`` when the connector is not registered; in that case the connector
        is briefly registered STOPPED so that offsets left by an earlier registration are reset.
        """
        running = self._client.config(name)
        if running is not None:
            self._masker.add_config(running)
        config = running if running is not None else (spec.request_config() if spec else {})
        slot, publication = slot_name(config), publication_name(config)
        if not drop_slot:
            deleted = self._client.delete(name)
            if deleted:
                log.info("connector deleted name=%s slot_kept=%s", name, slot)
            return DeleteResult(name, deleted, False, slot, None, publication, None)
        if running is None and spec is None:
            raise SpecError(
                f"connector {name} is not registered and has no spec: --drop-slot needs its "
                "database, slot and publication; name its spec file"
            )
        offsets_reset = self._retire(name, spec, registered=running is not None)
        source_spec = ConnectorSpec(name, config, spec.source if spec else None)
        with closing(self._source_factory(source_spec)) as source:
            slot_outcome = self._drop_slot(name, slot, source)
            publication_dropped = source.drop_publication(publication)
        log.info(
            "connector retired name=%s offsets_reset=%s slot=%s slot_outcome=%s publication=%s",
            name,
            offsets_reset,
            slot,
            slot_outcome.value,
            publication,
        )
        return DeleteResult(
            name,
            running is not None,
            offsets_reset,
            slot,
            slot_outcome,
            publication,
            publication_dropped,
        )

    def _validate(self, spec: ConnectorSpec, source: SourceDatabase) -> Validation:
        self._masker.add_config(spec.config)
        errors = rule_errors(spec.config)
        self._require_plugin(spec.connector_class)
        verdict = self._client.validate(spec.connector_class, spec.request_config())
        for key, messages in validation_errors(verdict, self._masker).items():
            errors.setdefault(key, []).extend(messages)
        if errors:
            raise self._invalid(spec, errors)
        publication = publication_name(spec.config)
        info = source.inspect(publication)
        captured = captured_tables(info.tables, spec.config)
        problems = info.problems(captured, publication)
        if problems:
            raise SourceDatabaseError(
                self._masker.text(
                    f"connector {spec.name}: the source database is not ready:\n  "
                    + "\n  ".join(problems)
                )
            )
        errors = capture_errors(captured, spec.config)
        if errors:
            raise self._invalid(spec, errors)
        return Validation(spec.name, tuple(captured))

    def _invalid(self, spec: ConnectorSpec, errors: FieldErrors) -> ConnectorInvalidError:
        masked = {k: [self._masker.text(m) for m in v] for k, v in sorted(errors.items())}
        where = f" ({spec.source})" if spec.source else ""
        lines = [f"  {key}: {message}" for key, messages in masked.items() for message in messages]
        return ConnectorInvalidError(
            f"connector {spec.name}{where} is invalid:\n" + "\n".join(lines), masked
        )

    def _require_plugin(self, connector_class: str) -> None:
        if self._plugins is None:
            self._plugins = {str(p.get("class")) for p in self._client.plugins()}
        if connector_class not in self._plugins:
            have = ", ".join(sorted(self._plugins)) or "none"
            raise ConnectError(
                f"the connector plugin {connector_class} is not installed on the Connect worker "
                f"at {self._client.base_url} (installed: {have}): put its plugin folder (for "
                "Debezium Postgres: debezium-connector-postgres/) under the worker's plugin.path; "
                "`fabric stack up` installs it"
            )

    def _check_slot_matches_offsets(self, spec: ConnectorSpec, source: SourceDatabase) -> None:
        """Refuse to run a registered connector whose slot is gone while Connect still holds its
        offsets: Debezium would create a new slot and skip every change in between."""
        if spec.config.get("slot.drop.on.stop") == "true":
            return
        offsets = self._client.offsets(spec.name) or []
        slot = slot_name(spec.config)
        if offsets and source.slot(slot) is None:
            lsn = offsets[0].get("offset", {}).get("lsn", "?")
            raise SourceDatabaseError(
                f"replication slot {slot} does not exist, but Connect holds offsets for connector "
                f"{spec.name} (lsn {lsn}): the changes since then are lost to it; reset both and "
                f"snapshot again: `fabric connectors delete --drop-slot {spec.name}`, then "
                f"`fabric connectors apply {spec.name}`"
            )

    def _registered(self, name: str) -> ConnectorStatus:
        status = self.status(name)
        if not status.registered:
            raise ConnectError(
                f"connector {name} is not registered on Connect at {self._client.base_url}: "
                f"`fabric connectors apply {name}` registers it"
            )
        return status

    def _await_target(self, name: str, desired: Mapping[str, str] | None) -> ConnectorStatus:
        """Wait for RUNNING, unless an operator has paused or stopped the connector."""
        current = self.status(name)
        if current.state in (PAUSED, STOPPED):
            return current
        return self._waiter.wait(name, RUNNING, changed=desired is not None, desired=desired)

    def _retire(self, name: str, spec: ConnectorSpec | None, *, registered: bool) -> bool:
        """Stop the connector, reset its offsets and unregister it; True if offsets existed."""
        if registered:
            self._client.stop(name)
            self._waiter.wait(name, STOPPED, changed=False)
        elif spec is not None:
            self._client.create_stopped(name, spec.config)
        offsets = self._client.offsets(name) or []
        if offsets:
            self._client.reset_offsets(name)
        self._client.delete(name)
        return bool(offsets)

    def _drop_slot(self, name: str, slot: str, source: SourceDatabase) -> SlotDrop:
        """Drop the slot once no walsender holds it (a stopped connector's lets go within
        moments), or say who holds it."""
        deadline = time.monotonic() + self._timing.timeout_s
        while True:
            outcome = source.drop_slot(slot)
            if outcome is not SlotDrop.ACTIVE:
                return outcome
            if time.monotonic() >= deadline:
                held = source.slot(slot)
                pid = held.active_pid if held else "?"
                waited = f"{self._timing.timeout_s:g}s"
                raise SourceDatabaseError(
                    f"replication slot {slot} is still in use by walsender pid {pid} after "
                    f"{waited}: a client other than connector {name} streams from "
                    "it, or an old walsender has not exited; stop that client (or wait for "
                    f"wal_sender_timeout), then run `fabric connectors delete --drop-slot {name}` "
                    "again"
                )
            time.sleep(self._timing.poll_s)
