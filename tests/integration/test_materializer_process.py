"""`fabric materialize run` as real OS processes against the real stack: crashes, restarts,
rebuilds, graceful stops, the status command and the metrics endpoint.

The module captures one table of its own through its own connector (a per-run topic prefix, so a
kept stack never shows a previous run's records); each test runs its own consumer group. The
stores are only ever opened by the test after their instance process has exited.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import pytest
import requests
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient
from prometheus_client.parser import text_string_to_metric_families

from fabric import cli, db
from fabric.catalog import Catalog
from fabric.config import REPO_ROOT, FabricConfig
from fabric.materialize.status import STALE_AFTER_S, InstanceStatus, read_statuses
from fabric.materialize.tables import decode_image
from fabric.stack.ports import free_ports
from fabric.state.options import StoreOptions
from fabric.state.store import PartitionStore

T = TypeVar("T")

TABLE = "mproc.items"
PARTITIONS = 3  # FABRIC_TOPIC_PARTITIONS in the session's environment
SEED_ROWS = 300
TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 5.0  # a graceful stop must take less than this

DDL = """
DROP SCHEMA IF EXISTS mproc CASCADE;
CREATE SCHEMA mproc;
CREATE TABLE mproc.items (
  id integer PRIMARY KEY,
  name text NOT NULL,
  qty integer NOT NULL,
  price numeric(10,2),
  seen_at timestamptz,
  active boolean,
  note text
);
"""
COLUMNS = "id, name, qty, price, seen_at, active, note"


def wait_for(
    what: str,
    check: Callable[[], T | None],
    timeout: float = TIMEOUT_S,
    describe: Callable[[], str] = str,
) -> T:
    """Poll ``check`` until it returns something other than None, or fail after ``timeout``
    with ``describe()`` (the last state seen) in the message."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result is not None:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}; {describe()}")
        time.sleep(0.2)


def same(a: Any, b: Any) -> bool:
    """Equal type and value; a Decimal must also keep its scale (12.30 is not 12.3)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, Decimal):
        return bool(a.as_tuple() == b.as_tuple())
    return bool(a == b)


# -- the captured source table -----------------------------------------------------------------


@dataclass
class Source:
    """The module's table, its topic, and how many records the connector must have produced."""

    cfg: FabricConfig
    prefix: str
    probe: Any  # a confluent_kafka Consumer, only for watermarks
    catalog: Catalog
    records: int = 0  # records the changes made so far put on the topic
    next_id: int = 1
    live: list[int] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def topic(self) -> str:
        return f"{self.prefix}.{TABLE}"

    def watermarks(self) -> dict[int, tuple[int, int]]:
        return {
            p: self.probe.get_watermark_offsets(
                TopicPartition(self.topic, p), timeout=10, cached=False
            )
            for p in range(PARTITIONS)
        }

    def end_offsets(self) -> dict[int, int]:
        return {p: high for p, (_, high) in self.watermarks().items()}

    def topic_records(self) -> int:
        return sum(high - low for low, high in self.watermarks().values())

    def change(
        self, rng: random.Random, inserts: int, updates: int, deletes: int, conn: Any = None
    ) -> int:
        """One transaction of inserts (COPY), updates and deletes; returns the changes made."""
        with self.lock:
            new_ids = list(range(self.next_id, self.next_id + inserts))
            self.next_id += inserts
        own = conn is None
        conn = db.connect(self.cfg.endpoints) if own else conn
        try:
            with conn.transaction(), conn.cursor() as cur:
                with cur.copy(f"COPY {TABLE} ({COLUMNS}) FROM STDIN") as copy:
                    for i in new_ids:
                        copy.write_row(_row_values(rng, i))
                with self.lock:
                    picked = rng.sample(self.live, min(updates + deletes, len(self.live)))
                to_update, to_delete = picked[:updates], picked[updates:]
                cur.execute(
                    f"UPDATE {TABLE} SET qty = qty + 1, price = %s, seen_at = %s, note = %s,"
                    " active = NOT coalesce(active, false) WHERE id = ANY(%s)",
                    [_price(rng), _moment(rng), _note(rng), to_update],
                )
                updated: int = cur.rowcount
                cur.execute(f"DELETE FROM {TABLE} WHERE id = ANY(%s)", [to_delete])
                deleted: int = cur.rowcount
        finally:
            if own:
                conn.close()
        with self.lock:
            gone = set(to_delete)
            self.live = [i for i in self.live if i not in gone] + new_ids
            # A delete is followed by its tombstone: two records.
            self.records += inserts + updated + 2 * deleted
        return inserts + updated + deleted

    def wait_delivered(self) -> dict[int, int]:
        """Wait until the connector has put every change made so far on the topic."""

        def delivered() -> dict[int, int] | None:
            ends = self.end_offsets()
            return ends if sum(ends.values()) >= self.records else None

        return wait_for(f"{self.records} records on {self.topic}", delivered)

    def table_rows(self) -> dict[int, dict[str, Any]]:
        with db.connect(self.cfg.endpoints) as conn:
            cur = conn.execute(f"SELECT * FROM {TABLE}")
            assert cur.description is not None
            names = [d.name for d in cur.description]
            return {
                int(row[0]): dict(zip(names, row, strict=True))  # type: ignore[call-overload]
                for row in cur.fetchall()
            }


def _price(rng: random.Random) -> Decimal:
    return Decimal(rng.randrange(0, 10_000_000)).scaleb(-2)


def _moment(rng: random.Random) -> datetime:
    return datetime(2024, 1, 1, tzinfo=UTC) + timedelta(microseconds=rng.randrange(10**14))


def _note(rng: random.Random) -> str | None:
    return None if rng.random() < 0.3 else f"note ☃ {rng.randrange(10**6)} 'q' \"dq\""


def _row_values(rng: random.Random, i: int) -> tuple[Any, ...]:
    active = None if i % 7 == 0 else i % 2 == 0
    return (i, f"item {i}", rng.randrange(1000), _price(rng), _moment(rng), active, _note(rng))


@pytest.fixture(scope="module")
def source(
    stack_env: dict[str, str], stack_config: FabricConfig, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Source]:
    """The module's table, seeded and captured by its own connector, retired at the end."""
    suffix = uuid.uuid4().hex[:6]
    prefix = f"mproc{suffix}"
    bootstrap = stack_config.endpoints.kafka_bootstrap
    probe = Consumer({"bootstrap.servers": bootstrap, "group.id": f"{prefix}-probe"})
    src = Source(stack_config, prefix, probe, Catalog(lambda: db.connect(stack_config.endpoints)))
    with db.connect(stack_config.endpoints) as conn:
        conn.execute(DDL)
        src.change(random.Random(1), SEED_ROWS, 0, 0, conn)
    spec = json.loads((REPO_ROOT / "connectors" / "auction.json").read_text())
    spec["name"] = prefix
    spec["config"].update(
        {
            "topic.prefix": prefix,
            "slot.name": f"cdc_fabric_{prefix}",
            "publication.name": f"cdc_fabric_{prefix}",
            "table.include.list": TABLE,
            "message.prefix.include.list": "cdc-fabric\\.truncate\\.mproc\\..*",
        }
    )
    path: Path = tmp_path_factory.mktemp("mproc") / f"{prefix}.json"
    path.write_text(json.dumps(spec))
    assert cli.main(["connectors", "apply", str(path)], environ=stack_env) == 0
    try:
        src.wait_delivered()
        yield src
    finally:
        cli.main(["connectors", "delete", "--drop-slot", str(path)], environ=stack_env)
        probe.close()
        with db.connect(stack_config.endpoints) as conn:
            conn.execute("DROP SCHEMA mproc CASCADE")
        admin = AdminClient({"bootstrap.servers": bootstrap})
        existing = admin.list_topics(timeout=10).topics
        ours = [t for t in existing if prefix in t]
        for future in admin.delete_topics(ours).values() if ours else ():
            future.result(timeout=30)


class Writer(threading.Thread):
    """Heavy ingest from a thread: transactions of inserts (COPY), updates and deletes.

    Unthrottled, Postgres takes 40,000 changes in about a second while the CDC pipeline needs
    several, so "in the middle of the ingest" would come after the writer has finished. The
    writer is paced at ``rate`` changes/s instead, below what Connect sustains, so that a crash
    and a restart both happen while changes are being written and applied.
    """

    def __init__(self, src: Source, batches: int, per_batch: int, rate: float) -> None:
        super().__init__(name="mproc-writer", daemon=True)
        self._src = src
        self._batches = batches
        self._per_batch = per_batch
        self._rate = rate
        self.total = batches * per_batch
        self.changes = 0
        self.seconds = 0.0
        self.error: BaseException | None = None

    def run(self) -> None:
        rng = random.Random(42)
        n = self._per_batch
        started = time.monotonic()
        try:
            with db.connect(self._src.cfg.endpoints) as conn:
                for number in range(self._batches):
                    ahead = started + number * n / self._rate - time.monotonic()
                    if ahead > 0:
                        time.sleep(ahead)  # pacing, not waiting for a condition
                    self.changes += self._src.change(rng, n // 2, n * 2 // 5, n // 10, conn)
        except BaseException as exc:
            self.error = exc
        self.seconds = time.monotonic() - started

    def finish(self) -> None:
        self.join(TIMEOUT_S)
        assert not self.is_alive(), "the writer did not finish"
        if self.error is not None:
            raise self.error


# -- instance processes ------------------------------------------------------------------------


@dataclass
class Instance:
    """One `fabric materialize run` process (a restart is a new Instance with the same id)."""

    instance_id: str
    group: str
    state_dir: Path
    log: Path
    proc: subprocess.Popen[bytes]

    def status(self) -> InstanceStatus | None:
        """The instance's status file, once this very process has written it."""
        for status in read_statuses(self.state_dir.parent):
            if status.instance_id == self.instance_id and status.pid == self.proc.pid:
                return status
        return None

    def stop(self) -> int:
        """SIGTERM, then wait for the exit; returns the exit code."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{self.instance_id} still running {STOP_TIMEOUT_S}s after SIGTERM")

    def kill(self) -> None:
        self.proc.kill()  # SIGKILL
        self.proc.wait(10)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


Launch = Callable[..., Instance]


@pytest.fixture
def launch(
    source: Source, stack_env: dict[str, str], stack_config: FabricConfig, tmp_path: Path
) -> Iterator[Launch]:
    """Start ``fabric -v materialize run --instance-id ID [ARGS...]`` in group ``group``;
    every process started is stopped at the end (SIGTERM, then SIGKILL) and its state removed."""
    started: list[Instance] = []
    instances_dir = stack_config.materializer.instances_dir

    def start(instance_id: str, group: str, *args: str) -> Instance:
        env = {
            **stack_env,
            "FABRIC_GROUP": group,
            "FABRIC_TOPIC_PREFIX": source.prefix,
            "FABRIC_DEAD_LETTER_TOPIC": f"{source.prefix}.dead-letters",
        }
        log = tmp_path / f"{instance_id}.{len(started)}.log"
        command = [sys.executable, "-m", "fabric", "-v", "materialize", "run"]
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [*command, "--instance-id", instance_id, *args],
                env=env,
                cwd=REPO_ROOT,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        instance = Instance(instance_id, group, instances_dir / instance_id, log, proc)
        started.append(instance)
        return instance

    try:
        yield start
    finally:
        for instance in started:
            if instance.proc.poll() is None:
                instance.proc.terminate()
                try:
                    instance.proc.wait(10)
                except subprocess.TimeoutExpired:
                    instance.proc.kill()
                    instance.proc.wait(10)
        for instance_id in {i.instance_id for i in started}:
            shutil.rmtree(instances_dir / instance_id, ignore_errors=True)


def unique(name: str) -> str:
    return f"mproc-{name}-{uuid.uuid4().hex[:6]}"


def wait_converged(
    src: Source, instances: list[Instance], timeout: float = TIMEOUT_S
) -> dict[str, InstanceStatus]:
    """Wait until every change made so far is on the topic, ``instances`` together own every
    partition once, each owns at least one, and every partition is ACTIVE at the topic's end."""
    last: list[str] = []

    def check() -> dict[str, InstanceStatus] | None:
        for instance in instances:
            if instance.proc.poll() is not None:
                pytest.fail(
                    f"{instance.instance_id} exited with {instance.proc.returncode}:\n"
                    f"{instance.log_text()[-3000:]}"
                )
        ends = src.end_offsets()
        statuses = {i.instance_id: i.status() for i in instances}
        last[:] = [f"ends={ends} records={src.records}"] + [
            f"{k}: {[(p.partition, p.state, p.position) for p in s.partitions] if s else None}"
            for k, s in statuses.items()
        ]
        if sum(ends.values()) < src.records:
            return None
        found = {k: s for k, s in statuses.items() if s is not None and s.partitions}
        if len(found) != len(instances):
            return None
        parts = [p for s in found.values() for p in s.partitions if p.topic == src.topic]
        if sorted(p.partition for p in parts) != list(range(PARTITIONS)):
            return None
        if any(p.state != "ACTIVE" or p.position != ends[p.partition] for p in parts):
            return None
        return found

    what = "every partition ACTIVE at the end of the topic"
    return wait_for(what, check, timeout, lambda: "\n".join(last))


def owners(statuses: dict[str, InstanceStatus]) -> dict[int, Path]:
    return {p.partition: Path(s.state_dir) for s in statuses.values() for p in s.partitions}


def read_stores(
    src: Source, where: dict[int, Path]
) -> tuple[dict[int, dict[str, Any]], dict[int, int | None]]:
    """Rows (decoded) and applied offset of each partition's store; instances must be stopped."""
    rows: dict[int, dict[str, Any]] = {}
    offsets: dict[int, int | None] = {}
    for partition, state_dir in sorted(where.items()):
        path = state_dir / src.topic / str(partition)
        assert path.is_dir(), f"no store at {path}"
        with PartitionStore.open(path, StoreOptions()) as store:
            offsets[partition] = store.applied_offset()
            for _, stored in store.scan():
                values = decode_image(src.catalog, TABLE, stored.image)
                assert values["id"] not in rows, f"row {values['id']} is in two stores"
                rows[values["id"]] = values
    return rows, offsets


def assert_stores_equal_source(src: Source, where: dict[int, Path]) -> int:
    """The union of the stores is the table, row for row and value for value; every store's
    applied offset is its partition's last offset. Returns the number of rows."""
    rows, offsets = read_stores(src, where)
    expected = src.table_rows()
    missing = sorted(expected.keys() - rows.keys())
    extra = sorted(rows.keys() - expected.keys())
    assert (missing[:20], extra[:20]) == ([], []), f"{len(missing)} missing, {len(extra)} extra"
    differ: dict[int, dict[str, tuple[Any, Any]]] = {}
    for row_id, row in expected.items():
        got = rows[row_id]
        bad = {k: (got.get(k), v) for k, v in row.items() if k not in got or not same(got[k], v)}
        if bad or list(got) != list(row):
            differ[row_id] = bad
    assert differ == {}, f"{len(differ)} rows differ (store, postgres): {list(differ.items())[:5]}"
    ends = src.end_offsets()
    assert offsets == {p: ends[p] - 1 for p in range(PARTITIONS)}, f"ends {ends}"
    return len(rows)


def restored(status: InstanceStatus) -> tuple[int, int]:
    """Records re-read since assignment, and how many there were to re-read, over partitions."""
    return sum(p.restored for p in status.partitions), sum(
        p.restore_total for p in status.partitions
    )


def fabric_status(stack_env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "fabric", "materialize", "status", *args],
        env=stack_env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


# -- the tests ---------------------------------------------------------------------------------


def test_kill_9_mid_ingest_then_restart_loses_and_duplicates_nothing(
    source: Source, launch: Launch
) -> None:
    group, a_id, b_id = unique("crash"), unique("a"), unique("b")
    a, b = launch(a_id, group), launch(b_id, group)
    before = wait_converged(source, [a, b])
    b_partitions = sorted(p.partition for p in before[b_id].partitions)
    b_start = {p.partition: p.position for p in before[b_id].partitions}

    writer = Writer(source, batches=40, per_batch=1000, rate=4000)
    writer.start()

    def b_applying() -> bool | None:
        status = b.status()
        moved = status is not None and any(
            p.position > b_start[p.partition] for p in status.partitions
        )
        return True if writer.changes >= writer.total * 0.4 and moved else None

    wait_for("the writer 40% through and b applying its records", b_applying)
    b.kill()
    changes_at_kill = writer.changes
    wait_for("the writer 70% through", lambda: writer.changes >= writer.total * 0.7 or None)
    changes_at_restart = writer.changes
    b = launch(b_id, group)
    writer.finish()
    after = wait_converged(source, [a, b])
    assert sorted(p.partition for p in after[b_id].partitions) == b_partitions
    parts = [p for s in after.values() for p in s.partitions]
    assert [(p.dead_letters, p.routing_mismatches) for p in parts] == [(0, 0)] * PARTITIONS
    assert (a.stop(), b.stop()) == (0, 0)

    # The restarted b resumed each partition right after the offset its store held at the crash,
    # and re-read exactly the records between there and the end it found.
    resumes = resumed_from(b.log_text(), source.topic)
    assert sorted(resumes) == b_partitions
    for p in after[b_id].partitions:
        crashed_at, resume, end = resumes[p.partition]
        assert crashed_at is not None and resume == crashed_at + 1
        assert p.restored == p.restore_total == end - resume > 0
    rows = assert_stores_equal_source(source, owners(after))
    print(
        f"\ncrash: {writer.total} changes in {writer.seconds:.1f}s "
        f"({source.topic_records()} records on the topic); b killed -9 after {changes_at_kill} "
        f"changes, restarted after {changes_at_restart}; b's stores at the crash / the end at "
        f"restart: { {k: (v[0], v[2]) for k, v in resumes.items()} }; restarted b re-read "
        f"{restored(after[b_id])[0]} records; stores equal the table ({rows} rows), every "
        "applied offset = end - 1"
    )


def resumed_from(log: str, topic: str) -> dict[int, tuple[int | None, int, int]]:
    """From an instance's log: partition → (offset its store held when opened, resume offset,
    end offset at assignment)."""
    name = re.escape(topic)
    held = {
        int(m[1]): None if m[2] == "None" else int(m[2])
        for m in re.finditer(rf"store opened path=\S+/{name}/(\d+) applied_offset=(\S+)", log)
    }
    assigned = re.finditer(
        rf"partition assigned topic={name} partition=(\d+) resume=(\d+) end=(\d+)", log
    )
    return {int(m[1]): (held.get(int(m[1])), int(m[2]), int(m[3])) for m in assigned}


def test_restart_with_intact_state_rereads_only_what_arrived_while_down(
    source: Source, launch: Launch
) -> None:
    group, a_id = unique("resume"), unique("a")
    a = launch(a_id, group)
    wait_converged(source, [a])
    assert a.stop() == 0
    ends_before = source.end_offsets()
    rng = random.Random(7)
    changes = source.change(rng, 2, 2, 1)
    assert changes == 5
    ends_down = source.wait_delivered()
    appended = sum(ends_down.values()) - sum(ends_before.values())

    a = launch(a_id, group)
    status = wait_converged(source, [a])[a_id]
    count, total = restored(status)
    topic = source.topic_records()
    print(
        f"\nresume: {changes} changes ({appended} records) while down; the restart re-read "
        f"{count} records of {topic} on the topic"
    )
    assert count == total == appended
    assert count <= changes + 2, "re-read more than what arrived while down"
    assert count < topic
    assert a.stop() == 0
    assert_stores_equal_source(source, owners({a_id: status}))


def test_deleted_state_folder_rebuilds_every_partition_from_the_topic(
    source: Source, launch: Launch, stack_config: FabricConfig
) -> None:
    group, a_id = unique("rebuild"), unique("a")
    state_dir = stack_config.materializer.instances_dir / a_id
    a = launch(a_id, group, "--state-dir", str(state_dir))
    wait_converged(source, [a])
    assert a.stop() == 0
    shutil.rmtree(state_dir)

    a = launch(a_id, group, "--state-dir", str(state_dir))
    status = wait_converged(source, [a])[a_id]
    count, total = restored(status)
    topic = source.topic_records()
    print(f"\nrebuild: re-read {count} records, the whole topic holds {topic}")
    assert count == total == topic
    assert a.stop() == 0
    assert "no local store, building from the topic" in a.log_text()
    assert_stores_equal_source(source, owners({a_id: status}))


def test_sigterm_stops_cleanly_within_seconds(source: Source, launch: Launch) -> None:
    group, a_id = unique("sigterm"), unique("a")
    a = launch(a_id, group)
    wait_converged(source, [a])
    started = time.monotonic()
    assert a.stop() == 0
    elapsed = time.monotonic() - started
    print(f"\nsigterm: exited 0 after {elapsed:.2f}s")
    assert "materializer stopped" in a.log_text()
    assert "Traceback" not in a.log_text()
    with pytest.raises(ProcessLookupError):
        os.kill(a.proc.pid, 0)
    leftovers = [
        p.name for p in Path("/proc").iterdir() if p.name.isdigit() and a_id.encode() in _cmdline(p)
    ]
    assert leftovers == []


def _cmdline(proc_dir: Path) -> bytes:
    try:
        return (proc_dir / "cmdline").read_bytes()
    except OSError:  # exited meanwhile
        return b""


def test_status_shows_instances_partitions_and_a_killed_instance_as_not_running(
    source: Source, launch: Launch, stack_env: dict[str, str]
) -> None:
    group, a_id, b_id = unique("status"), unique("a"), unique("b")
    a, b = launch(a_id, group), launch(b_id, group)
    wait_converged(source, [a, b])
    ends = source.end_offsets()

    shown = {d["instance_id"]: d for d in json.loads(fabric_status(stack_env, "--json"))}
    for instance in (a, b):
        doc = shown[instance.instance_id]
        assert (doc["group"], doc["pid"], doc["running"]) == (group, instance.proc.pid, True)
        for part in doc["partitions"]:
            assert part["topic"] == source.topic and part["table"] == TABLE
            assert (part["state"], part["lag"]) == ("ACTIVE", 0)
            assert part["position"] == ends[part["partition"]]
    owned = sorted(p["partition"] for i in (a_id, b_id) for p in shown[i]["partitions"])
    assert owned == list(range(PARTITIONS))

    text = _instance_blocks(fabric_status(stack_env))
    for instance in (a, b):
        header, rows = text[instance.instance_id]
        assert header.endswith(f"group {group}  pid {instance.proc.pid}  running")
        for topic, partition, state, applied, lag in rows:
            assert (topic, state, lag) == (source.topic, "ACTIVE", 0)
            assert applied == ends[partition] - 1
    assert sorted(r[1] for i in (a_id, b_id) for r in text[i][1]) == list(range(PARTITIONS))

    b.kill()
    killed_at = time.monotonic()
    assert _running(b), "a fresh status must read as running, even of a process just killed"
    wait_for("b shown as not running", lambda: None if _running(b) else True, timeout=20)
    stale_after = time.monotonic() - killed_at
    # Not running once its last status (rewritten every 2 s) is older than STALE_AFTER_S.
    assert STALE_AFTER_S - 2.5 <= stale_after <= STALE_AFTER_S + 1
    header, _ = _instance_blocks(fabric_status(stack_env))[b_id]
    assert header.endswith("NOT RUNNING (last status shown)")
    b_json = {d["instance_id"]: d for d in json.loads(fabric_status(stack_env, "--json"))}[b_id]
    assert b_json["running"] is False

    # Static membership: b's partitions stay with it until the session times out, then a takes
    # them over and catches up.
    takeover = wait_converged(source, [a], timeout=40)
    print(
        f"\nstatus: killed b shown NOT RUNNING after {stale_after:.1f}s; a owned every partition "
        f"ACTIVE {time.monotonic() - killed_at:.1f}s after the kill"
    )
    assert len(takeover[a_id].partitions) == PARTITIONS
    assert a.stop() == 0


def _running(instance: Instance) -> bool:
    statuses = [s for s in read_statuses(instance.state_dir.parent) if s.pid == instance.proc.pid]
    return bool(statuses) and statuses[0].running


def _instance_blocks(text: str) -> dict[str, tuple[str, list[tuple[str, int, str, int, int]]]]:
    """`fabric materialize status` text: instance id → (header line, partition rows)."""
    blocks: dict[str, tuple[str, list[tuple[str, int, str, int, int]]]] = {}
    rows: list[tuple[str, int, str, int, int]] = []
    for line in text.splitlines():
        if line.startswith("instance "):
            rows = []
            blocks[line.split()[1]] = (line, rows)
        elif line.startswith("  ") and line.split()[0] not in ("topic", "(no", "commit"):
            topic, partition, state, applied, lag = line.split()[:5]
            rows.append((topic, int(partition), state, int(applied), int(lag)))
    return blocks


def test_metrics_per_partition_and_a_taken_port_is_refused_by_name(
    source: Source, launch: Launch
) -> None:
    group, a_id, b_id = unique("metrics"), unique("a"), unique("b")
    (port,) = free_ports(1)
    a = launch(a_id, group, "--metrics-port", str(port))
    wait_converged(source, [a])
    ends = source.end_offsets()

    response = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    samples: dict[str, dict[int, float]] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            if sample.labels.get("topic") == source.topic:
                assert sample.labels["instance"] == a_id and sample.labels["table"] == TABLE
                samples.setdefault(sample.name, {})[int(sample.labels["partition"])] = sample.value
    every = list(range(PARTITIONS))
    assert samples["fabric_partition_lag_records"] == dict.fromkeys(every, 0.0)
    assert samples["fabric_partition_applied_offset"] == {p: ends[p] - 1.0 for p in every}
    assert samples["fabric_partition_dead_letters_total"] == dict.fromkeys(every, 0.0)
    assert samples["fabric_partition_routing_mismatches_total"] == dict.fromkeys(every, 0.0)

    b = launch(b_id, group, "--metrics-port", str(port))
    try:
        code = b.proc.wait(30)
    except subprocess.TimeoutExpired:
        pytest.fail(f"a second instance on port {port} did not exit:\n{b.log_text()[-3000:]}")
    log = b.log_text()
    assert code == 1, log
    assert f"fabric: cannot serve metrics on 127.0.0.1:{port} (Address already in use)" in log
    assert "Traceback" not in log
    assert a.proc.poll() is None and a.stop() == 0
