"""The gRPC ``Fabric`` service of one instance: answers from its stores, forwards the rest.

Each RPC reads the partitions this instance serves and hands the others to the
:class:`fabric.serve.routing.Router`; every row answer carries its freshness (the source LSN
and commit time of the row, the partition, and how far that partition lags). The fabric's
errors become gRPC statuses once, at the edge of every method (:class:`_status_of`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NoReturn, cast

import grpc
from google.protobuf.message import DecodeError  # type: ignore[import-untyped]

from fabric.catalog import Catalog
from fabric.core.types import TableSchema, UnknownColumnsError
from fabric.errors import (
    FabricError,
    InvalidKeyError,
    MalformedEventError,
    PositionNotReachedError,
    SourceDatabaseError,
    StoreError,
    TooStaleError,
    UnknownTableError,
)
from fabric.materialize.instance import Materializer
from fabric.materialize.membership import HostInfo
from fabric.materialize.partition import PartitionPosition
from fabric.materialize.tables import KeyQueryMetadata, LocalTables, NotLocalError
from fabric.rpc.v1 import fabric_pb2 as pb
from fabric.rpc.v1 import fabric_pb2_grpc as pb_grpc
from fabric.rpc.values import RowEncoder, decode_key, decode_table
from fabric.rpc.wire import (
    AnswerWriter,
    RowWriter,
    batch_get_lookups,
    batch_get_request,
    batch_get_response,
    batch_get_results,
    get_response,
    lookup_result,
    unavailable_indexes,
)
from fabric.serve import forwarding
from fabric.serve.bounds import ReadBounds
from fabric.serve.forwarding import ForwardError, ForwardLinks, PendingForward
from fabric.serve.owned import LocatedPartition, OwnedGets
from fabric.serve.peers import Peers
from fabric.serve.routing import (
    NOT_OWNER,
    PREVIOUS_OWNER,
    RETRY_AFTER_MS,
    NotServedHereError,
    Router,
    UnavailableError,
    deadline_of,
    forward_timeout,
    is_forwarded,
    retried_in_time,
)
from fabric.serve.scanning import (
    parse_scan_token,
    prefix_values,
    scan_filter,
    scan_partitions,
    scan_token,
)
from fabric.serve.topology import GroupTopology, TopologySnapshot
from fabric.serve.watch import watch_changes
from fabric.state.row import StoredRow
from fabric.state.store import PartitionStore

log = logging.getLogger(__name__)

MAX_BATCH = 1000
_PEER_TOPOLOGY_S = 2.0


class FabricService(pb_grpc.FabricServicer):
    def __init__(
        self,
        me: HostInfo,
        materializer: Materializer,
        catalog: Catalog,
        topology: GroupTopology,
        peers: Peers,
        *,
        links: ForwardLinks,
    ) -> None:
        self._me = me
        self._materializer = materializer
        self._catalog = catalog
        self._tables = LocalTables(materializer, catalog)
        self._peers = peers
        self._links = links
        self._encoders: dict[str, RowEncoder] = {}
        self._writers: dict[str, RowWriter] = {}
        self._answers = AnswerWriter(me.instance_id)
        self._asking = ThreadPoolExecutor(max_workers=8, thread_name_prefix="ask-peer")
        self._bounds = ReadBounds(materializer)
        self._owned = OwnedGets(catalog, materializer, self._answers, self._writer)
        self._router = Router(me, topology)

    def close(self) -> None:
        """Once the server has drained: no call forwards any more."""
        self._asking.shutdown(wait=True)
        self._bounds.close()

    # -- lookups other instances forward over their links --------------------------------------

    def answer_forwarded(self, method: int, body: bytes, deadline: float) -> bytes:
        """A ``Get`` or ``BatchGet`` another instance forwarded over its link: answered from
        this instance's stores, never forwarded again. The fabric's errors become the
        :class:`ForwardError` of the gRPC status the call would have had."""
        try:
            if method == forwarding.GET:
                native = self._owned.answer_serialized(body)
                if native is not None:
                    return native
                request = pb.GetRequest.FromString(body)
                answer, located = self._owned.answer(request)
                if answer is not None:
                    return answer
                return self._get(request, located, deadline, forwarded=True)
            if method == forwarding.BATCH_GET_LOCATED:
                return self._answer_located(_located_parts(body))
            return self._batch_get(
                pb.BatchGetRequest.FromString(body), deadline, forwarded=True, serialized=body
            )
        except DecodeError as exc:
            raise _unparsed(exc) from None
        except _FABRIC_ERRORS as exc:
            raise _status(exc) from None

    # -- Get ---------------------------------------------------------------------------------

    def get_handler(
        self, refusal: object, general: Callable[[bytes, grpc.ServicerContext], bytes]
    ) -> Callable[[bytes, grpc.ServicerContext], bytes]:
        """The gRPC handler of ``Get``: it takes the request's bytes and answers a key this
        instance owns natively (:class:`fabric.serve.owned.OwnedGets`); ``general`` parses
        and answers the rest with :meth:`Get`, and every call once ``refusal.on``."""
        return self._owned.handler(refusal, general)

    def Get(self, request: pb.GetRequest, context: grpc.ServicerContext) -> bytes:
        """A serialized ``GetResponse``: written here, or a peer's as the peer sent it."""
        answer, located = self._owned.answer(request)
        if answer is not None:
            return answer
        with _status_of(context):
            return self._get(request, located, deadline_of(context), is_forwarded(context))

    def _get(
        self,
        request: pb.GetRequest,
        located: KeyQueryMetadata | None,
        deadline: float,
        forwarded: bool,
    ) -> bytes:
        meta = (
            located
            if located is not None
            else self._metadata(_qualified(request.table), request.key)
        )
        if request.HasField("bound"):
            self._bounds.wait(meta, request.bound, deadline)
        # Other keys reaching their owner: answered here without the routing machinery.
        served = self._materializer.serving(meta.topic, meta.partition)
        if served is not None:
            store, position = served
            try:
                stored = store.get_stored(meta.key)
            except StoreError:
                pass  # closed as the partition moves away: the routed way below retries
            else:
                answer = self._answers.get_response(
                    self._writer(meta.table),
                    stored,
                    partition=meta.partition,
                    applied_offset=position.position - 1,
                    lag_records=position.lag,
                )
                if answer is not None:
                    return answer
                row = None if stored is None else StoredRow.decode(stored)
                return get_response(*self._answer(meta.table, meta.partition, row, position))
        return self._get_one(meta, request, deadline, forwarded=forwarded)

    # -- BatchGet ------------------------------------------------------------------------------

    def BatchGet(self, request: pb.BatchGetRequest, context: grpc.ServicerContext) -> bytes:
        """A serialized ``BatchGetResponse``."""
        with _status_of(context):
            return self._batch_get(request, deadline_of(context), is_forwarded(context))

    def _batch_get(
        self,
        request: pb.BatchGetRequest,
        deadline: float,
        forwarded: bool,
        serialized: bytes | None = None,
    ) -> bytes:
        """``request``'s answers; ``serialized`` is the request as it arrived, when at hand."""
        if len(request.lookups) > MAX_BATCH:
            raise _LimitError(
                f"a BatchGet holds at most {MAX_BATCH} lookups, got {len(request.lookups)};"
                " split it into several calls"
            )
        results: list[bytes | None] = [None] * len(request.lookups)
        if serialized is None:
            serialized = request.SerializeToString()
        located = self._owned.locate(serialized)
        if located is None:  # a lookup with a bound: each located on its own
            metas, bounded = self._owned.metadata(request.lookups)
            pending = [(index, meta) for index, meta in enumerate(metas) if meta is not None]
            parts: list[LocatedPartition] = []
            others = [index for index, meta in enumerate(metas) if meta is None]
        else:
            parts, others = located
            pending, bounded = [], False
        for index in others:
            lookup = request.lookups[index]
            try:
                pending.append((index, self._metadata(_qualified(lookup.table), lookup.key)))
            except FabricError as exc:
                results[index] = _failed(_code_of(exc), str(exc))
        parts.extend(LocatedPartition.grouped(pending))
        self._batch(
            request, serialized, parts, results, deadline, forwarded=forwarded, bounded=bounded
        )
        return _batch_response(results)

    def _batch(
        self,
        request: pb.BatchGetRequest,
        serialized: bytes,
        parts: list[LocatedPartition],
        results: list[bytes | None],
        deadline: float,
        *,
        forwarded: bool,
        bounded: bool = False,
    ) -> None:
        """One pass: local partitions read here, the others sent to their owners, one request
        per owner.
        What is left (a partition moving or restoring) goes the single-lookup way, with its
        retries and handover fallback, until a moment that leaves time to send the answer
        (UNAVAILABLE after it); a forwarded batch answers it UNAVAILABLE at once, for the
        forwarder to retry."""
        remote: dict[HostInfo, list[LocatedPartition]] = {}
        local: list[tuple[LocatedPartition, tuple[PartitionStore, PartitionPosition]]] = []
        waiting: list[tuple[int, KeyQueryMetadata]] = []
        snapshot: TopologySnapshot | None = None  # read once, at the first partition not here
        for part in parts:
            served = self._materializer.serving(part.topic, part.partition)
            if served is not None:
                local.append((part, served))
                continue
            position = self._materializer.partition_position(part.topic, part.partition)
            if snapshot is None and not forwarded:
                snapshot = self._router.snapshot(deadline)
            owner = None if snapshot is None else snapshot.owner(part.topic, part.partition)
            if owner is None or owner == self._me or position is not None:
                waiting.extend(part.metadata())
            else:
                remote.setdefault(owner, []).append(part)
        # The owners read their sub-batches while this instance reads its own.
        arrived = batch_get_lookups(serialized) if remote and bounded else None
        sent = [
            (theirs, self._send_batch(owner, request, arrived, theirs, deadline, bounded=bounded))
            for owner, theirs in remote.items()
        ]
        for part, served in local:
            reading = part
            if bounded:
                admitted = self._within_bounds(request, part.metadata(), results, deadline)
                reading = LocatedPartition.of(part, admitted)
            if not reading.indexes:
                continue
            answers = self._read_partition(reading.table, reading.partition, reading.keys, served)
            if answers is None:
                waiting.extend(reading.metadata())
                continue
            for index, answer in zip(reading.indexes, answers, strict=True):
                results[index] = answer
        for theirs, call in sent:
            waiting.extend(self._batch_answers(call, theirs, results))
        if forwarded:
            for index, meta in waiting:
                results[index] = _not_served_here(meta.table, meta.partition)
            return

        for index, result in retried_in_time(
            waiting,
            deadline,
            lambda index, meta, until: self._retried(request.lookups[index], meta, until),
            _unavailable,
        ):
            results[index] = result

    def _retried(self, lookup: pb.GetRequest, meta: KeyQueryMetadata, until: float) -> bytes:
        """A batch's lookup answered the single-lookup way, as its ``LookupResult``; raises
        :class:`UnavailableError` when its partition stays unavailable until ``until``."""
        try:
            answer = pb.GetResponse.FromString(self._get_one(meta, lookup, until, forwarded=False))
        except ForwardError as exc:
            return _failed(exc.code, exc.message)
        except FabricError as exc:
            return _failed(_code_of(exc), str(exc))
        result: bytes = pb.LookupResult(
            status="OK", found=answer.found, row=answer.row, freshness=answer.freshness
        ).SerializeToString()
        return result

    def _get_one(
        self, meta: KeyQueryMetadata, request: pb.GetRequest, deadline: float, *, forwarded: bool
    ) -> bytes:
        """A serialized ``GetResponse``, from this instance's store or its owner's."""

        def local() -> bytes:
            if request.HasField("bound"):
                self._bounds.wait(meta, request.bound, deadline)
            stored, position = self._tables.read(meta)
            return get_response(*self._answer(meta.table, meta.partition, stored, position))

        response: bytes = self._router.routed(
            meta,
            deadline,
            forwarded,
            local=local,
            remote=lambda owner, timeout: self._links.call(
                _peer_address(owner), forwarding.GET, request.SerializeToString(), timeout
            ),
        )
        return response

    def _within_bounds(
        self,
        request: pb.BatchGetRequest,
        items: list[tuple[int, KeyQueryMetadata]],
        results: list[bytes | None],
        deadline: float,
    ) -> list[tuple[int, KeyQueryMetadata]]:
        """The lookups of a local partition once it meets their bounds; those it did not meet
        in time get their failure in ``results``."""
        admitted = []
        for index, meta in items:
            lookup = request.lookups[index]
            try:
                if lookup.HasField("bound"):
                    self._bounds.wait(meta, lookup.bound, deadline)
            except FabricError as exc:
                results[index] = _failed(_code_of(exc), str(exc))
            else:
                admitted.append((index, meta))
        return admitted

    def _read_partition(
        self,
        table: str,
        partition: int,
        keys: list[bytes],
        served: tuple[PartitionStore, PartitionPosition],
    ) -> list[bytes] | None:
        """The ``LookupResult`` s of ``keys`` of one partition this instance serves, in their
        order, read in one multi-get; None when its store closed as the partition moved away."""
        store, position = served
        try:
            stored_values = store.get_many_stored(keys)
        except StoreError:
            return None
        answers = self._answers.lookup_results(
            self._writer(table),
            stored_values,
            partition=partition,
            applied_offset=position.position - 1,
            lag_records=position.lag,
        )
        if None not in answers:
            return cast(list[bytes], answers)
        # Rows the native writer declines: the Python path answers them or names what is wrong.
        written = []
        for stored, native in zip(stored_values, answers, strict=True):
            if native is not None:
                written.append(native)
                continue
            try:
                row = None if stored is None else StoredRow.decode(stored)
                written.append(lookup_result(*self._answer(table, partition, row, position)))
            except FabricError as exc:
                written.append(_failed(_code_of(exc), str(exc)))
        return written

    def _send_batch(
        self,
        owner: HostInfo,
        request: pb.BatchGetRequest,
        arrived: list[bytes] | None,
        parts: list[LocatedPartition],
        deadline: float,
        *,
        bounded: bool,
    ) -> PendingForward | ForwardError:
        """Send the lookups of ``parts`` to their owner without waiting for its serialized
        answer: as a located batch, or, when the request has read bounds, as the lookups
        arrived (``arrived``: the request's lookups cut from its bytes, None when it was not
        encoded so)."""
        if not bounded:
            method = forwarding.BATCH_GET_LOCATED
            forward = forwarding.located_batch(
                (part.table, part.topic, part.partition, part.keys) for part in parts
            )
        else:
            method = forwarding.BATCH_GET
            indexes = [index for part in parts for index in part.indexes]
            if arrived is not None:
                forward = batch_get_request([arrived[index] for index in indexes])
            else:  # not encoded as the fabric reads it fast: written again
                forward = pb.BatchGetRequest(
                    lookups=[request.lookups[index] for index in indexes]
                ).SerializeToString()
        try:
            return self._links.send(
                _peer_address(owner), method, forward, forward_timeout(deadline)
            )
        except ForwardError as exc:
            return exc

    def _answer_located(self, parts: list[forwarding.LocatedKeys]) -> bytes:
        """A located batch another instance forwarded: one result per key, in its order; the
        keys of a partition not served here are UNAVAILABLE, for the forwarder to retry."""
        results: list[bytes] = []
        for table, topic, partition, keys in parts:
            served = self._materializer.serving(topic, partition)
            answers = None
            if served is not None:
                answers = self._read_partition(table, partition, keys, served)
            if answers is None:
                answers = [_not_served_here(table, partition)] * len(keys)
            results.extend(answers)
        return _batch_response(results)

    def _batch_answers(
        self,
        call: PendingForward | ForwardError,
        parts: list[LocatedPartition],
        results: list[bytes | None],
    ) -> list[tuple[int, KeyQueryMetadata]]:
        """An owner's answers to the forwarded lookups of ``parts``, passed on as it wrote
        them; returns the ones to try again."""
        try:
            if isinstance(call, ForwardError):
                raise call
            response = call.result()
            answer = batch_get_results(response)
        except ForwardError as exc:
            # UNIMPLEMENTED: an owner of an older version, mid-upgrade, reads no located
            # batch; its lookups then go the single-lookup way.
            if exc.code not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNIMPLEMENTED):
                for part in parts:
                    for index in part.indexes:
                        results[index] = _failed(exc.code, exc.message)
                return []
            return [item for part in parts for item in part.metadata()]
        indexes = [index for part in parts for index in part.indexes]
        for index, result in zip(indexes, answer, strict=True):
            results[index] = result
        # An UNAVAILABLE result stands until its lookup's retry answers it.
        retry = {indexes[i] for i in unavailable_indexes(response, answer)}
        if not retry:
            return []
        return [item for part in parts for item in part.metadata() if item[0] in retry]

    # -- Scan ----------------------------------------------------------------------------------

    def Scan(
        self, request: pb.ScanRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.ScanResponse]:
        with _status_of(context):
            table = _qualified(request.table)
            schema, topic, count = self._captured(table)
            matches = scan_filter(request, schema.primary_key, table)
            start_partition, after_key = parse_scan_token(request.resume_token, count)
            partitions = scan_partitions(request, start_partition, count, table)
            deadline = deadline_of(context)
            forwarded = is_forwarded(context)
            left = request.limit or None
            for partition in partitions:
                resume = after_key if partition == start_partition else None
                rows = self._scan_partition(
                    request,
                    table=table,
                    topic=topic,
                    partition=partition,
                    after_key=resume,
                    deadline=deadline,
                    forwarded=forwarded,
                )
                for response in rows:
                    if not matches(response):
                        continue
                    yield response
                    if left is not None:
                        left -= 1
                        if left == 0:
                            return

    def _scan_partition(
        self,
        request: pb.ScanRequest,
        *,
        table: str,
        topic: str,
        partition: int,
        after_key: bytes | None,
        deadline: float,
        forwarded: bool,
    ) -> Iterator[pb.ScanResponse]:
        meta = KeyQueryMetadata(table, topic, partition, b"")
        served = self._materializer.serving(topic, partition)
        if served is not None:
            store, local = served
            for key, stored in store.scan(start=after_key):
                if after_key is not None and key == after_key:
                    continue
                yield pb.ScanResponse(
                    row=pb.Row.FromString(self._row(table, stored.image)),
                    freshness=self._freshness(stored, partition, local),
                    resume_token=scan_token(partition, key),
                )
            return
        forward = pb.ScanRequest(
            table=request.table,
            partition=partition,
            resume_token=scan_token(partition, after_key) if after_key is not None else "",
        )
        yield from self._router.routed(
            meta,
            deadline,
            forwarded,
            local=lambda: self._raise_not_local(meta),
            remote=lambda owner, timeout: self._peers.scan(
                owner.endpoint, forward, timeout, self._router.forward_metadata
            ),
        )

    def _raise_not_local(self, meta: KeyQueryMetadata) -> NoReturn:
        position = self._materializer.partition_position(meta.topic, meta.partition)
        raise NotLocalError(meta.table, meta.partition, position.state if position else None)

    # -- GetTopology -----------------------------------------------------------------------------

    def GetTopology(
        self, request: pb.GetTopologyRequest, context: grpc.ServicerContext
    ) -> pb.Topology:
        with _status_of(context):
            forwarded = is_forwarded(context)
            deadline = deadline_of(context)
            snapshot = self._router.snapshot(deadline, max_age_s=0.0 if not forwarded else 1.0)
            remote_state: dict[tuple[str, int], tuple[str, int]] = {}
            # Each other instance tells the state and lag of what it owns, all asked at once.
            asked = [
                (
                    host,
                    self._asking.submit(
                        self._peers.stub(host.endpoint).GetTopology,
                        pb.GetTopologyRequest(),
                        timeout=min(_PEER_TOPOLOGY_S, forward_timeout(deadline)),
                        metadata=self._router.forward_metadata,
                    ),
                )
                for host in ([] if forwarded else snapshot.instances)
                if host != self._me
            ]
            for host, call in asked:
                try:
                    theirs = call.result()
                except grpc.RpcError:
                    continue
                for info in theirs.tables:
                    for part in info.partitions:
                        if part.owner == host.instance_id:
                            remote_state[(info.topic, part.partition)] = (
                                part.state,
                                part.lag_records,
                            )
            tables = []
            for topic in self._materializer.table_topics():
                table = self._materializer.table_of(topic)
                count = self._materializer.partition_count(topic) or 0
                try:
                    schema = self._catalog.schema(table)
                except FabricError:
                    schema = None
                primary_key = list(schema.primary_key) if schema else []
                key_columns = [
                    pb.KeyColumn(
                        name=c.name,
                        pg_type=c.type.pg_type,
                        base_type=c.type.base,
                        is_enum=c.type.is_enum,
                    )
                    for name in primary_key
                    for c in (schema.columns if schema else ())
                    if c.name == name
                ]
                partitions = []
                for partition in range(count):
                    owner = snapshot.owner(topic, partition)
                    local = self._materializer.partition_position(topic, partition)
                    if local is not None:
                        state, lag = local.state.value, local.lag
                        owner = self._me
                    elif owner is not None:
                        state, lag = remote_state.get((topic, partition), ("UNKNOWN", -1))
                    else:
                        state, lag = "UNASSIGNED", -1
                    partitions.append(
                        pb.PartitionInfo(
                            partition=partition,
                            owner=owner.instance_id if owner else "",
                            endpoint=owner.endpoint if owner else "",
                            state=state,
                            lag_records=lag,
                        )
                    )
                tables.append(
                    pb.TableInfo(
                        table=table,
                        topic=topic,
                        primary_key=primary_key,
                        partitions=partitions,
                        key_columns=key_columns,
                    )
                )
            instances = {h.instance_id: h for h in snapshot.instances}
            instances[self._me.instance_id] = self._me
            return pb.Topology(
                tables=tables,
                instances=[
                    pb.Instance(instance_id=h.instance_id, endpoint=h.endpoint)
                    for h in sorted(instances.values(), key=lambda h: h.instance_id)
                ],
            )

    # -- Watch -----------------------------------------------------------------------------------

    def Watch(
        self, request: pb.WatchRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.WatchEvent]:
        with _status_of(context):
            table = _qualified(request.table)
            schema, topic, count = self._captured(table)
            key_meta = None
            if request.HasField("key"):
                key_meta = self._metadata(table, request.key)
            prefix: list[Any] = []
            if request.HasField("prefix"):
                prefix = prefix_values(request.prefix, schema.primary_key, table)
            yield from watch_changes(
                bootstrap=self._materializer.bootstrap,
                marker_topic=self._materializer.settings.marker_topic,
                table=table,
                topic=topic,
                partitions=[key_meta.partition] if key_meta else list(range(count)),
                key=key_meta.key if key_meta else None,
                prefix=prefix,
                primary_key=schema.primary_key,
                resume_token=request.resume_token,
                decode_image=lambda image: self._tables.decode(table, image),
                encoder=lambda: self._encoder(table),
                is_active=context.is_active,
                served_by=self._me.instance_id,
            )

    # -- answers -------------------------------------------------------------------------------

    def _captured(self, table: str) -> tuple[TableSchema, str, int]:
        """A captured table's definition, topic and partition count; UnknownTableError else."""
        schema = self._catalog.schema(table)
        topic = self._materializer.topic_of(table)
        count = self._materializer.partition_count(topic)
        if count is None:
            raise UnknownTableError(f"table {table} has no topic {topic}: it is not captured")
        return schema, topic, count

    def _metadata(self, table: str, key: pb.Key) -> KeyQueryMetadata:
        codec = self._catalog.codec(table)
        if codec is None:
            self._catalog.schema(table)  # UnknownTableError when Postgres has no such table
            raise InvalidKeyError(f"table {table} has no primary key to look rows up by")
        if codec.integer_key and len(key.fields) == 1:
            field = key.fields[0]
            if field.value.WhichOneof("kind") == "int" and field.name in ("", codec.columns[0]):
                return self._tables.route(table, codec.encode_integer(field.value.int))
        values = decode_key(key, codec.columns, table)
        return self._tables.key_metadata(table, values)

    def _answer(
        self, table: str, partition: int, stored: StoredRow | None, position: PartitionPosition
    ) -> tuple[bytes | None, bytes]:
        """A lookup's serialized row (None: no such key) and freshness."""
        applied_offset = position.position - 1
        if stored is None:
            return None, self._answers.freshness(
                lsn=0,
                commit_time_ms=0,
                partition=partition,
                offset=-1,
                applied_offset=applied_offset,
                lag_records=position.lag,
            )
        return self._row(table, stored.image), self._answers.freshness(
            lsn=stored.lsn or 0,
            commit_time_ms=stored.commit_ts_ms or 0,
            partition=partition,
            offset=stored.offset,
            applied_offset=applied_offset,
            lag_records=position.lag,
        )

    def _row(self, table: str, image: bytes) -> bytes:
        """A stored image as a serialized ``Row`` under the table's current definition."""
        try:
            return self._writer(table).row(image)
        except UnknownColumnsError:
            # The table changed shape since its definition was read: read it again. A column
            # still unknown then was dropped after the row was written, and Postgres no longer
            # shows it either.
            self._catalog.refresh(table)
            return self._writer(table).row(image, ignore_unknown=True)

    def _writer(self, table: str) -> RowWriter:
        schema = self._catalog.schema(table)
        writer = self._writers.get(table)
        # The catalog holds one object per definition it read: comparing identity spares
        # hashing the definition on every answer.
        if writer is None or writer.schema is not schema:
            writer = RowWriter(schema)
            self._writers[table] = writer
        return writer

    def _freshness(
        self, row: StoredRow | None, partition: int, position: PartitionPosition
    ) -> pb.Freshness:
        return pb.Freshness(
            lsn=(row.lsn or 0) if row else 0,
            commit_time_ms=(row.commit_ts_ms or 0) if row else 0,
            partition=partition,
            offset=row.offset if row else -1,
            applied_offset=position.position - 1,
            lag_records=position.lag,
            served_by=self._me.instance_id,
        )

    def _encoder(self, table: str) -> RowEncoder:
        schema = self._catalog.schema(table)
        encoder = self._encoders.get(table)
        # The catalog holds one object per definition it read: comparing identity spares
        # hashing the definition (TableSchema.version) on every answer.
        if encoder is None or encoder.schema is not schema:
            encoder = RowEncoder(schema)
            self._encoders[table] = encoder
        return encoder


# -- request helpers -------------------------------------------------------------------------


class _LimitError(FabricError):
    pass


def _peer_address(owner: HostInfo) -> str:
    address = owner.peer_address
    if address is None:
        raise ForwardError(
            grpc.StatusCode.UNAVAILABLE,
            f"instance {owner.instance_id} advertises no forwarding port; restart it with this"
            " version of the fabric",
        )
    return address


def _qualified(table: str) -> str:
    return decode_table(table)


# The fabric's own errors, each answered with its status; any other is a bug, which gRPC
# answers UNKNOWN.
_FABRIC_ERRORS = (NotServedHereError, UnavailableError, FabricError)


def _status(exc: NotServedHereError | UnavailableError | FabricError) -> ForwardError:
    """The gRPC status the fabric's error answers a call with, and the previous owner when it
    names one: the same whether the call came over gRPC or a forwarding link, where it travels
    as this very :class:`ForwardError`."""
    if isinstance(exc, NotServedHereError):
        previous = exc.previous.client_id if exc.previous is not None else ""
        return ForwardError(
            grpc.StatusCode.UNAVAILABLE, "this instance does not serve that partition", previous
        )
    if isinstance(exc, UnavailableError):
        return ForwardError(grpc.StatusCode.UNAVAILABLE, exc.message)
    return ForwardError(_code_of(exc), str(exc))


def _code_of(exc: FabricError) -> grpc.StatusCode:
    if isinstance(exc, UnknownTableError):
        return grpc.StatusCode.NOT_FOUND
    if isinstance(exc, InvalidKeyError):
        return grpc.StatusCode.INVALID_ARGUMENT
    if isinstance(exc, _LimitError):
        return grpc.StatusCode.RESOURCE_EXHAUSTED
    if isinstance(exc, SourceDatabaseError | StoreError):
        return grpc.StatusCode.UNAVAILABLE
    if isinstance(exc, MalformedEventError):
        return grpc.StatusCode.DATA_LOSS
    if isinstance(exc, PositionNotReachedError):
        return grpc.StatusCode.DEADLINE_EXCEEDED
    if isinstance(exc, TooStaleError):
        return grpc.StatusCode.FAILED_PRECONDITION
    return grpc.StatusCode.INTERNAL


def _failed(code: grpc.StatusCode, message: str) -> bytes:
    serialized: bytes = pb.LookupResult(status=code.name, message=message).SerializeToString()
    return serialized


def _unavailable(exc: UnavailableError) -> bytes:
    return _failed(grpc.StatusCode.UNAVAILABLE, exc.message)


def _batch_response(results: Sequence[bytes | None]) -> bytes:
    """A ``BatchGetResponse`` of ``results``; a lookup left unanswered (a bug) is INTERNAL."""
    if None in results:
        results = [r if r is not None else _failed(grpc.StatusCode.INTERNAL, "") for r in results]
    return batch_get_response(cast(list[bytes], results))


def _unparsed(exc: Exception) -> ForwardError:
    return ForwardError(
        grpc.StatusCode.INVALID_ARGUMENT, f"a forwarded request does not parse: {exc}"
    )


def _located_parts(body: bytes) -> list[forwarding.LocatedKeys]:
    try:
        return forwarding.located_parts(body)
    except ValueError as exc:
        raise _unparsed(exc) from None


def _not_served_here(table: str, partition: int) -> bytes:
    """A forwarded lookup's answer while its partition is not served here (moving, or
    restoring): the forwarder retries it."""
    return _failed(
        grpc.StatusCode.UNAVAILABLE, f"{table}: partition {partition} is not served here; retry"
    )


class _status_of:  # noqa: N801 - used as a context manager, like contextlib's
    """Turn the fabric's errors into gRPC statuses, once, at the edge of every method."""

    def __init__(self, context: grpc.ServicerContext) -> None:
        self._context = context

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: Any
    ) -> None:
        if exc is None:
            return
        if isinstance(exc, ForwardError):
            # A peer's answer to a forwarded request: passed on as the peer gave it.
            self._context.abort(exc.code, exc.message)
        if not isinstance(exc, _FABRIC_ERRORS):
            return
        status = _status(exc)
        if isinstance(exc, NotServedHereError):
            trailer = [(NOT_OWNER, "1")]
            if status.previous:
                trailer.append((PREVIOUS_OWNER, status.previous))
            self._context.set_trailing_metadata(tuple(trailer))
        elif isinstance(exc, UnavailableError):
            self._context.set_trailing_metadata(((RETRY_AFTER_MS, "200"),))
        self._context.abort(status.code, status.message)
