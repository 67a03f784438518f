"""The client's values ↔ the service's messages: keys go out; rows, their freshness and changes
come back as psycopg values."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from fabric.client._rows import decode_results
from fabric.client.topology import TableInfo
from fabric.errors import FabricClientError, InvalidKeyError
from fabric.rpc.v1 import fabric_pb2 as pb
from fabric.rpc.values import decode_row, decode_value, decoders_by_field, encode_key

KeyInput = Mapping[str, Any] | Sequence[Any] | Any
ChangeKind = Literal["upsert", "delete", "truncate"]


@dataclass(frozen=True)
class Freshness:
    lsn: int  # source LSN of the change that wrote the row (0: unknown)
    commit_time_ms: int
    partition: int
    offset: int  # Kafka offset of the record that wrote the row
    applied_offset: int  # the partition's last applied offset when answering
    lag_records: int
    served_by: str  # the instance that read its store


@dataclass(frozen=True)
class FabricRow:
    values: dict[str, Any]  # psycopg values, in table column order
    freshness: Freshness


@dataclass(frozen=True)
class Change:
    kind: ChangeKind
    key: dict[str, Any]  # empty for a truncate
    row: dict[str, Any] | None  # upserts only
    lsn: int
    commit_time_ms: int
    resume_token: str  # pass to watch(resume_token=...) to continue after this change


def key_tuple(info: TableInfo, key: KeyInput) -> tuple[Any, ...]:
    names = info.primary_key
    if isinstance(key, Mapping):
        missing = [n for n in names if n not in key]
        extra = [n for n in key if n not in names]
        if missing or extra:
            raise InvalidKeyError(
                f"{info.table}: the key is ({', '.join(names)})"
                + (f"; missing {', '.join(missing)}" if missing else "")
                + (f"; {', '.join(map(str, extra))} not in the key" if extra else ""),
                (missing or extra)[0],
            )
        return tuple(key[n] for n in names)
    if isinstance(key, list | tuple):
        if len(key) != len(names):
            raise InvalidKeyError(
                f"{info.table}: the key is ({', '.join(names)}), {len(names)} value(s); "
                f"got {len(key)}"
            )
        return tuple(key)
    if len(names) != 1:
        raise InvalidKeyError(
            f"{info.table}: the key is ({', '.join(names)}): pass a mapping or a sequence"
        )
    return (key,)


def key_message(info: TableInfo, values: Sequence[Any]) -> pb.Key:
    return _encoded(info, info.primary_key[: len(values)], values)


def partial_key(info: TableInfo, part: KeyInput) -> pb.Key:
    """A key prefix or range bound: its first columns, by name or in key order."""
    if isinstance(part, Mapping):
        return _encoded(info, list(part), list(part.values()))
    values = list(part) if isinstance(part, list | tuple) else [part]
    if len(values) > len(info.primary_key):
        raise InvalidKeyError(f"{info.table}: the key has {len(info.primary_key)} columns")
    return _encoded(info, info.primary_key[: len(values)], values)


def _encoded(info: TableInfo, names: Sequence[str], values: Sequence[Any]) -> pb.Key:
    try:
        return encode_key(names, values)
    except TypeError as exc:
        raise InvalidKeyError(f"{info.table}: {exc}") from None


_DECODERS = decoders_by_field()


def decode_lookup_results(answer: bytes) -> list[tuple[str, str, FabricRow | None, str]]:
    """A serialized ``BatchGetResponse``'s results, read natively (fabric/client/_rows.c):
    each one's status (OK, or the gRPC status code name of its failure), message, row (None:
    no such key, or a failure) and the instance that answered it."""
    return [
        (
            status,
            message,
            FabricRow(values, Freshness(*fresh)) if values is not None else None,
            fresh[6],
        )
        for status, message, _, values, fresh in decode_results(answer, _DECODERS)
    ]


def decode_fabric_row(row: pb.Row, freshness: pb.Freshness) -> FabricRow:
    return FabricRow(decode_row(row), _freshness(freshness))


def _freshness(message: pb.Freshness) -> Freshness:
    return Freshness(
        lsn=message.lsn,
        commit_time_ms=message.commit_time_ms,
        partition=message.partition,
        offset=message.offset,
        applied_offset=message.applied_offset,
        lag_records=message.lag_records,
        served_by=message.served_by,
    )


_KINDS: dict[int, ChangeKind] = {
    pb.WatchEvent.UPSERT: "upsert",
    pb.WatchEvent.DELETE: "delete",
    pb.WatchEvent.TRUNCATE: "truncate",
}


def decode_change(event: pb.WatchEvent) -> Change:
    kind = _KINDS.get(event.kind)
    if kind is None:
        raise FabricClientError(f"a watch event of unknown kind {event.kind}")
    return Change(
        kind=kind,
        key={f.name: decode_value(f.value) for f in event.key.fields},
        row=decode_row(event.row) if kind == "upsert" else None,
        lsn=event.freshness.lsn,
        commit_time_ms=event.freshness.commit_time_ms,
        resume_token=event.resume_token,
    )


def shown(values: Sequence[Any]) -> str:
    """A key as an error message shows it."""
    text = repr(values[0]) if len(values) == 1 else repr(tuple(values))
    return text if len(text) <= 80 else text[:77] + "..."
