"""The connector manager against a fake Kafka Connect REST server and a fake source database.

The fake Connect is a real HTTP server on 127.0.0.1 (port 0, its own thread) that keeps
connectors in memory and answers like Connect 4.x does, so the whole HTTP path is exercised.
"""

from __future__ import annotations

import json
import re
import socket
import threading
import urllib.parse
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from fabric import cli
from fabric.config import REPO_ROOT
from fabric.connect.capture import TableInfo
from fabric.connect.manager import ApplyOutcome, ConnectorManager
from fabric.connect.masking import MASK, Masker
from fabric.connect.rest import ConnectClient
from fabric.connect.source import SlotDrop, SlotInfo, SourceInfo
from fabric.connect.spec import ConnectorSpec, load_spec
from fabric.connect.waiting import Timing
from fabric.errors import (
    ConnectError,
    ConnectorFailedError,
    ConnectorInvalidError,
    ConnectUnreachableError,
    SourceDatabaseError,
)

PG = "io.debezium.connector.postgresql.PostgresConnector"
SECRET = "Zx9-secret-Pw"
VALUES = {
    "FABRIC_PG_HOST": "127.0.0.1",
    "FABRIC_PG_PORT": "25432",
    "FABRIC_PG_DATABASE": "auction",
    "FABRIC_PG_CDC_USER": "fabric_cdc",
    "FABRIC_PG_CDC_PASSWORD": SECRET,
    "FABRIC_TOPIC_PARTITIONS": "3",
}
TABLES = ("users", "items", "bids")


# --- the fake Connect worker -----------------------------------------------------------------


@dataclass
class Connector:
    config: dict[str, str]
    state: str = "RUNNING"
    task_state: str = "RUNNING"
    trace: str | None = None
    offsets: list[dict[str, Any]] = field(default_factory=list)


class FakeConnect:
    """Connect's REST API over an in-memory map of connectors."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.plugins = [{"class": PG, "type": "source", "version": "3.6.1.Final"}]
        self.connectors: dict[str, Connector] = {}
        self.field_errors: dict[str, list[str]] = {}
        self.conflicts = 0  # how many of the next writes answer 409
        self.next_trace: str | None = None  # the next (re)started task fails with this trace
        self.log: list[str] = []

    def handle(self, method: str, raw_path: str, body: Any) -> tuple[int, Any]:
        url = urllib.parse.urlsplit(raw_path)
        path = urllib.parse.unquote(url.path)
        query = dict(urllib.parse.parse_qsl(url.query))
        with self.lock:
            self.log.append(f"{method} {path}" + (f"?{url.query}" if url.query else ""))
            if method != "GET" and self.conflicts > 0:
                self.conflicts -= 1
                return 409, {"error_code": 409, "message": "Cannot complete request momentarily"}
            return self._route(method, path, query, body)

    def _route(self, method: str, path: str, query: dict[str, str], body: Any) -> tuple[int, Any]:
        if path == "/":
            return 200, {"version": "4.3.1", "commit": "fake", "kafka_cluster_id": "fake-cluster"}
        if path == "/connector-plugins":
            return 200, self.plugins
        if m := re.fullmatch(r"/connector-plugins/([^/]+)/config/validate", path):
            return self._validate(m.group(1), body)
        if path == "/connectors" and method == "POST":
            self.connectors[body["name"]] = Connector(dict(body["config"]), state="STOPPED")
            return 201, {"name": body["name"]}
        m = re.fullmatch(r"/connectors/([^/]+)(/[a-z]+)?", path)
        if m is None:
            return 404, {"error_code": 404, "message": f"no route {path}"}
        name, action = m.group(1), m.group(2) or ""
        if method == "PUT" and action == "/config":
            created = name not in self.connectors
            previous = self.connectors.get(name)
            self.connectors[name] = Connector(
                {**body, "name": name}, offsets=previous.offsets if previous else []
            )
            self._start(self.connectors[name])
            return (201 if created else 200), {"name": name, "config": body}
        connector = self.connectors.get(name)
        if connector is None:
            return 404, {"error_code": 404, "message": f"Connector {name} not found"}
        return self._act(name, connector, method, action, query)

    def _act(
        self, name: str, c: Connector, method: str, action: str, query: dict[str, str]
    ) -> tuple[int, Any]:
        if (method, action) == ("GET", "/config"):
            return 200, c.config
        if (method, action) == ("GET", "/status"):
            tasks = [] if c.state == "STOPPED" else [self._task(c)]
            return 200, {
                "name": name,
                "connector": {"state": c.state, "worker_id": "w:1"},
                "tasks": tasks,
                "type": "source",
            }
        if (method, action) == ("GET", "/tasks"):
            return 200, [{"id": {"connector": name, "task": 0}, "config": {**c.config}}]
        if (method, action) == ("GET", "/offsets"):
            return 200, {"offsets": c.offsets}
        if (method, action) == ("POST", "/restart"):
            if query.get("onlyFailed") != "true" or c.task_state == "FAILED":
                self._start(c)
            return 202, None
        if (method, action) in (("PUT", "/pause"), ("PUT", "/resume"), ("PUT", "/stop")):
            c.state = {"/pause": "PAUSED", "/resume": "RUNNING", "/stop": "STOPPED"}[action]
            c.task_state = "RUNNING" if action == "/resume" else c.state
            return (204 if action == "/stop" else 202), None
        if (method, action) == ("DELETE", "/offsets"):
            if c.state != "STOPPED":
                return 400, {
                    "error_code": 400,
                    "message": "Connectors must be in the STOPPED state",
                }
            c.offsets = []
            return 200, {"message": "The offsets for this connector have been reset successfully"}
        if (method, action) == ("DELETE", ""):
            del self.connectors[name]
            return 204, None
        return 405, {"error_code": 405, "message": "HTTP 405 Method Not Allowed"}

    def _start(self, c: Connector) -> None:
        c.state = "RUNNING"
        c.task_state, c.trace = (
            ("FAILED", self.next_trace) if self.next_trace else ("RUNNING", None)
        )

    @staticmethod
    def _task(c: Connector) -> dict[str, Any]:
        task: dict[str, Any] = {"id": 0, "state": c.task_state, "worker_id": "w:1"}
        if c.trace:
            task["trace"] = c.trace
        return task

    def _validate(self, cls: str, body: dict[str, str]) -> tuple[int, Any]:
        if cls not in {p["class"] for p in self.plugins}:
            return 500, {
                "error_code": 500,
                "message": "org.apache.kafka.connect.runtime.rest.errors.BadRequestException: "
                f"Failed to find any class that implements Connector and which name matches {cls}"
                ", available connectors are: PluginDesc{...}",
            }
        configs = [
            {
                "definition": {"name": k},
                "value": {
                    "name": k,
                    "value": v,
                    "errors": self.field_errors.get(k, []),
                    "visible": True,
                },
            }
            for k, v in body.items()
        ]
        errors = sum(len(v) for v in self.field_errors.values())
        return 200, {"name": cls, "error_count": errors, "groups": [], "configs": configs}


class _Handler(BaseHTTPRequestHandler):
    fake: FakeConnect

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        status, answer = self.fake.handle(self.command, self.path, body)
        payload = b"" if answer is None else json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def do_GET(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def connect() -> Iterator[tuple[FakeConnect, str]]:
    fake = FakeConnect()
    handler = type("Handler", (_Handler,), {"fake": fake})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    try:
        yield fake, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


# --- the fake source database ----------------------------------------------------------------


@dataclass
class FakeSource:
    tables: list[TableInfo]
    replication: bool = True
    triggers: set[str] = field(default_factory=set)
    slots: dict[str, SlotInfo] = field(default_factory=dict)
    publications: set[str] = field(default_factory=set)
    published: dict[str, frozenset[str]] = field(default_factory=dict)
    closed: int = 0

    def inspect(self, publication: str) -> SourceInfo:
        return SourceInfo(
            user="fabric_cdc",
            database="auction",
            can_login=True,
            replication=self.replication,
            superuser=False,
            wal_level="logical",
            server_version=150018,
            can_create=True,
            publication_exists=publication in self.publications,
            tables=tuple(self.tables),
        )

    def install_truncate_triggers(self, tables: Sequence[TableInfo]) -> list[str]:
        new = [t.qualified for t in tables if t.qualified not in self.triggers]
        self.triggers.update(new)
        return new

    def slot(self, name: str) -> SlotInfo | None:
        return self.slots.get(name)

    def drop_slot(self, name: str) -> SlotDrop:
        slot = self.slots.get(name)
        if slot is None:
            return SlotDrop.ABSENT
        if slot.active:
            return SlotDrop.ACTIVE
        del self.slots[name]
        return SlotDrop.DROPPED

    def drop_publication(self, name: str) -> bool:
        existed = name in self.publications
        self.publications.discard(name)
        return existed

    def align_publication(self, name: str, tables: Sequence[TableInfo]) -> bool:
        wanted = frozenset(t.qualified for t in tables)
        changed = self.published.get(name) != wanted
        self.published[name] = wanted
        self.publications.add(name)
        return changed

    def close(self) -> None:
        self.closed += 1


def table(name: str, *, pk: bool = True) -> TableInfo:
    return TableInfo("public", name, pk, "d", ("id", "v"), "fabric_app", True)


@pytest.fixture
def source() -> FakeSource:
    return FakeSource([table(t) for t in TABLES])


@pytest.fixture
def spec() -> ConnectorSpec:
    return load_spec(REPO_ROOT / "connectors" / "auction.json").render(VALUES)


def make_manager(
    url: str, source: FakeSource, *, timeout_s: float = 2.0, **client: Any
) -> ConnectorManager:
    masker = Masker([SECRET])
    return ConnectorManager(
        ConnectClient(url, timeout=5, masker=masker, **client),
        lambda _spec: source,
        masker=masker,
        timing=Timing(timeout_s=timeout_s, poll_s=0.01, settle_s=0.0, grace_s=0.1),
    )


@pytest.fixture
def manager(connect: tuple[FakeConnect, str], source: FakeSource) -> ConnectorManager:
    return make_manager(connect[1], source)


def writes(fake: FakeConnect) -> list[str]:
    return [line for line in fake.log if not line.startswith("GET")]


# --- apply -----------------------------------------------------------------------------------


def test_apply_creates_then_a_second_apply_is_unchanged(
    connect: tuple[FakeConnect, str],
    manager: ConnectorManager,
    source: FakeSource,
    spec: ConnectorSpec,
) -> None:
    fake, _ = connect
    first = manager.apply(spec)
    assert first.outcome is ApplyOutcome.CREATED
    assert first.status.summary() == "RUNNING (task 0 RUNNING)"
    assert first.triggers_installed == ("public.users", "public.items", "public.bids")
    assert fake.connectors["auction"].config == {**spec.config, "name": "auction"}

    second = manager.apply(spec)
    assert second.outcome is ApplyOutcome.UNCHANGED
    assert second.diff.empty
    assert second.triggers_installed == ()
    validations = [f"PUT /connector-plugins/{PG}/config/validate"] * 2
    assert writes(fake) == [validations[0], "PUT /connectors/auction/config", validations[1]]
    assert source.closed == 2


def test_apply_sends_only_a_changed_config(
    connect: tuple[FakeConnect, str], manager: ConnectorManager, spec: ConnectorSpec
) -> None:
    fake, _ = connect
    manager.apply(spec)
    changed = ConnectorSpec(spec.name, {**spec.config, "poll.interval.ms": "100"}, spec.source)
    result = manager.apply(changed)
    assert result.outcome is ApplyOutcome.UPDATED
    assert result.diff.lines() == ["~ poll.interval.ms: 50 -> 100"]
    assert fake.connectors["auction"].config["poll.interval.ms"] == "100"


def test_409_during_a_rebalance_is_retried(
    connect: tuple[FakeConnect, str], manager: ConnectorManager, spec: ConnectorSpec
) -> None:
    fake, _ = connect
    fake.conflicts = 2
    assert manager.apply(spec).outcome is ApplyOutcome.CREATED
    validate = f"PUT /connector-plugins/{PG}/config/validate"
    assert writes(fake) == [validate, validate, validate, "PUT /connectors/auction/config"]


def test_409_past_the_deadline_is_an_error(
    connect: tuple[FakeConnect, str], source: FakeSource, spec: ConnectorSpec
) -> None:
    fake, url = connect
    fake.conflicts = 1000
    manager = make_manager(url, source, conflict_timeout_s=0.3)
    with pytest.raises(ConnectError) as caught:
        manager.apply(spec)
    assert str(caught.value) == (
        f"Kafka Connect refused PUT /connector-plugins/{PG}/config/validate (HTTP 409): "
        "Cannot complete request momentarily"
    )


def test_validation_errors_are_reported_per_field(
    connect: tuple[FakeConnect, str], manager: ConnectorManager, spec: ConnectorSpec
) -> None:
    fake, _ = connect
    fake.field_errors = {
        "snapshot.mode": ["The 'snapshot.mode' value is invalid: Value must be one of always"],
        "database.hostname": [
            f'Error while validating connector config: FATAL: password "{SECRET}" refused'
        ],
    }
    broken = ConnectorSpec(spec.name, {**spec.config, "skipped.operations": "none"}, spec.source)
    with pytest.raises(ConnectorInvalidError) as caught:
        manager.apply(broken)
    assert caught.value.field_errors == {
        "database.hostname": [
            f'Error while validating connector config: FATAL: password "{MASK}" refused'
        ],
        "skipped.operations": [
            "must include t: Debezium's truncate events have a null key, which a compacted topic "
            "rejects (the task dies); the fabric's truncate triggers replace them"
        ],
        "snapshot.mode": ["The 'snapshot.mode' value is invalid: Value must be one of always"],
    }
    lines = str(caught.value).splitlines()
    assert lines[0] == f"connector auction ({spec.source}) is invalid:"
    assert lines[1] == (
        f'  database.hostname: Error while validating connector config: FATAL: password "{MASK}" '
        "refused"
    )
    assert lines[3] == (
        "  snapshot.mode: The 'snapshot.mode' value is invalid: Value must be one of always"
    )
    assert SECRET not in str(caught.value)
    assert "PUT /connectors/auction/config" not in fake.log


def test_a_keyless_table_is_refused(
    connect: tuple[FakeConnect, str],
    manager: ConnectorManager,
    source: FakeSource,
    spec: ConnectorSpec,
) -> None:
    source.tables.append(table("bids_log", pk=False))
    keyless = ConnectorSpec(
        spec.name, {**spec.config, "table.include.list": "public\\..*"}, spec.source
    )
    with pytest.raises(ConnectorInvalidError) as caught:
        manager.apply(keyless)
    assert list(caught.value.field_errors) == ["message.key.columns"]
    assert (
        str(caught.value)
        .splitlines()[1]
        .startswith(
            "  message.key.columns: public.bids_log has no primary key: name its key columns in "
            "message.key.columns (e.g. public.bids_log:col1,col2), or add a primary key"
        )
    )
    assert source.triggers == set()


def test_a_role_without_replication_is_told_how_to_fix_it(
    manager: ConnectorManager, source: FakeSource, spec: ConnectorSpec
) -> None:
    source.replication = False
    with pytest.raises(SourceDatabaseError) as caught:
        manager.validate(spec)
    assert str(caught.value) == (
        "connector auction: the source database is not ready:\n"
        "  role fabric_cdc lacks REPLICATION, which logical replication needs: as a superuser "
        "run ALTER ROLE fabric_cdc REPLICATION"
    )


def test_a_missing_plugin_says_where_it_belongs(
    connect: tuple[FakeConnect, str], manager: ConnectorManager, spec: ConnectorSpec
) -> None:
    fake, url = connect
    fake.plugins = []
    with pytest.raises(ConnectError) as caught:
        manager.validate(spec)
    assert str(caught.value) == (
        f"the connector plugin {PG} is not installed on the Connect worker at {url} "
        "(installed: none): put its plugin folder (for Debezium Postgres: "
        "debezium-connector-postgres/) under the worker's plugin.path; "
        "`fabric stack up` installs it"
    )


def test_connects_class_not_found_answer_is_translated(connect: tuple[FakeConnect, str]) -> None:
    _, url = connect
    with pytest.raises(ConnectError) as caught:
        ConnectClient(url).validate("com.example.Nope", {"connector.class": "com.example.Nope"})
    assert str(caught.value) == (
        f"the connector plugin is not installed on the Connect worker at {url} "
        "(org.apache.kafka.connect.runtime.rest.errors.BadRequestException: Failed to find any "
        "class that implements Connector and which name matches com.example.Nope): put the "
        "Debezium Postgres connector folder under the worker's plugin.path (`fabric stack up` "
        "installs it)"
    )


def test_a_failed_task_fails_apply_with_its_trace_masked(
    connect: tuple[FakeConnect, str], manager: ConnectorManager, spec: ConnectorSpec
) -> None:
    fake, _ = connect
    fake.next_trace = (
        "org.apache.kafka.connect.errors.ConnectException: Could not create slot\n"
        "\tat io.debezium.connector.postgresql.PostgresConnectorTask.start(X.java:1)\n"
        f"Caused by: org.postgresql.util.PSQLException: password={SECRET} rejected\n"
        "\t... 9 more"
    )
    with pytest.raises(ConnectorFailedError) as caught:
        manager.apply(spec)
    assert str(caught.value) == (
        "connector auction failed:\n"
        "  task 0 FAILED: org.apache.kafka.connect.errors.ConnectException: Could not create slot\n"
        f"      Caused by: org.postgresql.util.PSQLException: password={MASK} rejected\n"
        "full traces: `fabric connectors status --json auction`; worker log: "
        "`fabric stack logs connect`; once the cause is fixed: `fabric connectors restart auction`"
    )


def test_status_masks_a_secret_only_the_running_config_knows(
    connect: tuple[FakeConnect, str], source: FakeSource, spec: ConnectorSpec
) -> None:
    fake, url = connect
    remote = "only-on-connect-9"
    fake.connectors["remote"] = Connector(
        {"connector.class": PG, "database.password": remote, "name": "remote"},
        task_state="FAILED",
        trace=f"org.postgresql.util.PSQLException: auth failed for {remote}",
    )
    status = make_manager(url, source).status("remote")
    assert status.tasks[0].trace == f"org.postgresql.util.PSQLException: auth failed for {MASK}"


def test_restart_restarts_failed_tasks_and_waits_for_running(
    connect: tuple[FakeConnect, str], manager: ConnectorManager, spec: ConnectorSpec
) -> None:
    fake, _ = connect
    fake.next_trace = "java.lang.IllegalStateException: boom"
    with pytest.raises(ConnectorFailedError):
        manager.apply(spec)
    fake.next_trace = None
    status = manager.restart("auction", only_failed=True)
    assert status.summary() == "RUNNING (task 0 RUNNING)"
    assert "POST /connectors/auction/restart?includeTasks=true&onlyFailed=true" in fake.log


def test_pause_and_resume(manager: ConnectorManager, spec: ConnectorSpec) -> None:
    manager.apply(spec)
    assert manager.pause("auction").summary() == "PAUSED (task 0 PAUSED)"
    assert manager.apply(spec).status.summary() == "PAUSED (task 0 PAUSED)"
    assert manager.resume("auction").summary() == "RUNNING (task 0 RUNNING)"


def test_acting_on_an_unregistered_connector_says_how_to_register_it(
    connect: tuple[FakeConnect, str], manager: ConnectorManager
) -> None:
    _, url = connect
    with pytest.raises(ConnectError) as caught:
        manager.pause("ghost")
    assert str(caught.value) == (
        f"connector ghost is not registered on Connect at {url}: "
        "`fabric connectors apply ghost` registers it"
    )
    assert not manager.status("ghost").registered


# --- delete ----------------------------------------------------------------------------------


def test_delete_keeps_slot_publication_and_offsets(
    connect: tuple[FakeConnect, str],
    manager: ConnectorManager,
    source: FakeSource,
    spec: ConnectorSpec,
) -> None:
    fake, _ = connect
    manager.apply(spec)
    source.slots["cdc_fabric_auction"] = SlotInfo("cdc_fabric_auction", True, 4242)
    result = manager.delete("auction")
    assert (result.deleted, result.slot_outcome, result.publication_dropped) == (True, None, None)
    assert "cdc_fabric_auction" in source.slots
    assert "auction" not in fake.connectors


def test_delete_drop_slot_resets_offsets_then_drops_slot_and_publication(
    connect: tuple[FakeConnect, str],
    manager: ConnectorManager,
    source: FakeSource,
    spec: ConnectorSpec,
) -> None:
    fake, _ = connect
    manager.apply(spec)
    fake.connectors["auction"].offsets = [
        {"partition": {"server": "auction"}, "offset": {"lsn": 9}}
    ]
    source.slots["cdc_fabric_auction"] = SlotInfo("cdc_fabric_auction", False, None)
    source.publications.add("cdc_fabric_auction")
    result = manager.delete("auction", drop_slot=True)
    assert (result.deleted, result.offsets_reset) == (True, True)
    assert (result.slot_outcome, result.publication_dropped) == (SlotDrop.DROPPED, True)
    assert source.slots == {} and source.publications == set()
    tail = writes(fake)[-3:]
    assert tail == [
        "PUT /connectors/auction/stop",
        "DELETE /connectors/auction/offsets",
        "DELETE /connectors/auction",
    ]


def test_delete_drop_slot_names_the_pid_that_holds_the_slot(
    connect: tuple[FakeConnect, str], source: FakeSource, spec: ConnectorSpec
) -> None:
    manager = make_manager(connect[1], source, timeout_s=0.2)
    manager.apply(spec)
    source.slots["cdc_fabric_auction"] = SlotInfo("cdc_fabric_auction", True, 4242)
    with pytest.raises(SourceDatabaseError) as caught:
        manager.delete("auction", drop_slot=True)
    assert str(caught.value).startswith(
        "replication slot cdc_fabric_auction is still in use by walsender pid 4242 after 0.2s: "
        "a client other than connector auction streams from it"
    )


def test_delete_drop_slot_of_an_unregistered_connector_resets_leftover_offsets(
    connect: tuple[FakeConnect, str], manager: ConnectorManager, spec: ConnectorSpec
) -> None:
    fake, _ = connect
    result = manager.delete("auction", spec=spec, drop_slot=True)
    assert (result.deleted, result.slot_outcome) == (False, SlotDrop.ABSENT)
    assert writes(fake) == ["POST /connectors", "DELETE /connectors/auction"]


def test_apply_refuses_when_the_slot_is_gone_but_offsets_remain(
    connect: tuple[FakeConnect, str], manager: ConnectorManager, spec: ConnectorSpec
) -> None:
    fake, _ = connect
    manager.apply(spec)
    fake.connectors["auction"].offsets = [{"partition": {}, "offset": {"lsn": 31072232}}]
    with pytest.raises(SourceDatabaseError) as caught:
        manager.apply(spec)
    assert str(caught.value) == (
        "replication slot cdc_fabric_auction does not exist, but Connect holds offsets for "
        "connector auction (lsn 31072232): the changes since then are lost to it; reset both and "
        "snapshot again: `fabric connectors delete --drop-slot auction`, then "
        "`fabric connectors apply auction`"
    )


# --- reaching Connect ------------------------------------------------------------------------


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_unreachable_connect_says_which_url_and_what_to_do() -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    with pytest.raises(ConnectUnreachableError) as caught:
        ConnectClient(url, timeout=2).connectors()
    assert str(caught.value) == (
        f"Kafka Connect does not answer at {url} (Connection refused): start the local stack "
        "with `fabric stack up`, or point FABRIC_CONNECT_URL (or --connect-url) at your Connect "
        "worker's REST URL"
    )


def test_a_server_that_is_not_connect_is_not_mistaken_for_one() -> None:
    class NotConnect(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), NotConnect)
    threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        with pytest.raises(ConnectUnreachableError) as caught:
            ConnectClient(url).status("auction")
    finally:
        server.shutdown()
        server.server_close()
    assert str(caught.value).startswith(
        f"the server at {url} is not a Kafka Connect worker (GET / answered HTTP 404)"
    )


# --- the CLI over the fake Connect -----------------------------------------------------------


def cli_env(url: str, specs: Path, tmp_path: Path) -> dict[str, str]:
    return {
        "FABRIC_CONNECT_URL": url,
        "FABRIC_CONNECTORS_DIR": str(specs),
        "FABRIC_STATE_DIR": str(tmp_path / "state"),
        "FABRIC_PG_CDC_PASSWORD": SECRET,
        "FABRIC_TOPIC_PARTITIONS": "3",
        "HOME": str(tmp_path),
    }


def test_status_json_is_masked_and_exits_3_unless_running(
    connect: tuple[FakeConnect, str],
    manager: ConnectorManager,
    spec: ConnectorSpec,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    fake, url = connect
    fake.next_trace = f"java.lang.RuntimeException: auth {SECRET} failed\n\tat x.Y.z(Y.java:3)"
    with pytest.raises(ConnectorFailedError):
        manager.apply(spec)
    code = cli.main(
        ["connectors", "status", "--json", str(REPO_ROOT / "connectors" / "auction.json")],
        environ=cli_env(url, tmp_path, tmp_path),
    )
    out, err = capsys.readouterr()
    assert code == 3
    assert json.loads(out) == [
        {
            "name": "auction",
            "registered": True,
            "state": "RUNNING",
            "worker_id": "w:1",
            "trace": None,
            "tasks": [
                {
                    "id": 0,
                    "state": "FAILED",
                    "worker_id": "w:1",
                    "trace": f"java.lang.RuntimeException: auth {MASK} failed\n"
                    "\tat x.Y.z(Y.java:3)",
                }
            ],
        }
    ]
    assert SECRET not in out + err


def test_diff_cli_masks_the_password_and_exits_3(
    connect: tuple[FakeConnect, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, url = connect
    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "auction.json").write_text((REPO_ROOT / "connectors" / "auction.json").read_text())
    code = cli.main(["connectors", "diff"], environ=cli_env(url, specs, tmp_path))
    out, err = capsys.readouterr()
    assert code == 3
    assert out.splitlines()[0] == "auction: not registered; apply would create it"
    assert f"    + database.password={MASK}" in out.splitlines()
    assert SECRET not in out + err


def test_cli_errors_are_masked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    specs = tmp_path / "specs"
    specs.mkdir()
    config = {
        "connector.class": PG,
        "database.password": "${FABRIC_PG_CDC_PASSWORD}",
        "note": "pw=${FABRIC_PG_CDC_PASSWORD}",
        "bad": "${NOT_SET}",
    }
    (specs / "x.json").write_text(json.dumps({"name": "x", "config": config}))
    url = f"http://127.0.0.1:{closed_port()}"
    code = cli.main(["connectors", "apply"], environ=cli_env(url, specs, tmp_path))
    out, err = capsys.readouterr()
    assert code == 1
    assert err.startswith(f"fabric: {specs / 'x.json'}: ${{NOT_SET}} (in bad) has no value")
    assert SECRET not in out + err
