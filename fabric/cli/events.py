"""`fabric events tail`: watch the change events Connect writes, as they arrive."""

from __future__ import annotations

import argparse
import datetime as dt
import json

from fabric import topics
from fabric.config import FabricConfig
from fabric.core.events import ChangeEvent, TruncateMarker
from fabric.topics import TopicRecord

_VALUE_WIDTH = 70


def register(areas: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = areas.add_parser("events", help="watch the CDC topics")
    commands = parser.add_subparsers(dest="command", required=True, metavar="SUBCOMMAND")
    tail = commands.add_parser("tail", help="print change events as Connect writes them")
    tail.add_argument("--prefix", default="auction", help="topic prefix (default: auction)")
    tail.add_argument("--from-beginning", action="store_true", help="start at the oldest record")
    tail.add_argument("--max", type=int, default=0, help="stop after N records (0: no limit)")
    tail.add_argument(
        "--idle-timeout", type=float, default=None, help="stop after S seconds without a record"
    )
    tail.set_defaults(handler=_tail)


def _tail(args: argparse.Namespace, cfg: FabricConfig) -> int:
    records = topics.tail(
        cfg.endpoints.kafka_bootstrap,
        args.prefix,
        from_beginning=args.from_beginning,
        idle_timeout_s=args.idle_timeout,
    )
    for shown, record in enumerate(records, start=1):
        print(format_record(record), flush=True)
        if args.max and shown >= args.max:
            break
    return 0


def format_record(record: TopicRecord) -> str:
    """One line: where the record sits, what happened, to which key, and the new row image."""
    where = f"{record.topic}[{record.partition}]@{record.offset}"
    key = record.key.decode("utf-8", errors="replace") if record.key is not None else "null"
    event = record.event
    if record.error is not None:
        return f"{where}  !  {key}  malformed: {record.error}"
    if event is None:
        return f"{where}  ∅  {key}  (tombstone)"
    if isinstance(event, TruncateMarker):
        return f"{where}  t  {event.table} truncated at lsn={event.lsn}"
    return f"{where}  {event.op.value}  {key}  {_position(event)}  {_image(event)}"


def _position(event: ChangeEvent) -> str:
    commit = event.source.commit_ts_ms
    if commit is None:
        return f"lsn={event.source.lsn} commit=-"
    at = dt.datetime.fromtimestamp(commit / 1000, dt.UTC).strftime("%H:%M:%S.%f")[:-3]
    return f"lsn={event.source.lsn} commit={at}"


def _image(event: ChangeEvent) -> str:
    if event.after is None:
        # A delete's before-image is complete only under REPLICA IDENTITY FULL; with the
        # default identity its non-key columns are placeholders, so the key says it all.
        return "(row deleted)"
    text = json.dumps(event.after, ensure_ascii=False, separators=(",", ":"))
    return text if len(text) <= _VALUE_WIDTH else text[: _VALUE_WIDTH - 1] + "…"
