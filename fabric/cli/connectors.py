"""`fabric connectors apply | validate | diff | status | restart | pause | resume | delete`.

Each command acts on the specs it is given (a spec file path or a connector name each), or on every
spec in FABRIC_CONNECTORS_DIR when none is given, against the Connect REST URL of the environment
(FABRIC_CONNECT_URL, by default the local stack's) or --connect-url. Output is masked: no secret
value is ever printed, whichever command fails where.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
from collections.abc import Callable
from functools import wraps
from pathlib import Path

from fabric.config import FabricConfig
from fabric.connect.manager import ApplyOutcome, ApplyResult, ConnectorManager, DeleteResult
from fabric.connect.masking import Masker
from fabric.connect.rest import ConnectClient
from fabric.connect.source import PostgresSource, SourceParams
from fabric.connect.spec import ConnectorSpec, SpecTemplate, load_spec, load_specs, select_specs
from fabric.connect.status import RUNNING, ConnectorStatus
from fabric.connect.waiting import Timing
from fabric.errors import FabricError

EXIT_DIFFERENT = 3  # like `fabric stack status`: a negative answer, not an error

_EPILOG = """\
exit codes: 0 success; 1 error (message on stderr); 3 for `diff` when a spec differs from what
Connect runs, and for `status` when a connector is not RUNNING (2 stays argparse's usage error).
"""

Handler = Callable[[argparse.Namespace, FabricConfig, Masker], int]


def register(areas: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "spec",
        nargs="*",
        help="spec file or connector name (default: every spec in FABRIC_CONNECTORS_DIR)",
    )
    common.add_argument(
        "--connect-url", help="Kafka Connect REST URL (default: FABRIC_CONNECT_URL, or the stack's)"
    )
    parser = areas.add_parser(
        "connectors",
        help="register and manage the Debezium connectors from their specs",
        description=(
            "Register and manage the Debezium connectors declared by spec files. Each command "
            "acts on the specs it is given (file path or connector name), or on every spec in "
            "FABRIC_CONNECTORS_DIR; output never shows a secret."
        ),
        epilog=_EPILOG,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="SUBCOMMAND")

    def add(name: str, handler: Handler, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, parents=[common], help=help_text, epilog=_EPILOG)
        sub.set_defaults(handler=_masked(handler))
        return sub

    add("apply", _apply, "validate, install truncate triggers, register or update, wait RUNNING")
    add("validate", _validate, "check specs against Connect, the fabric's rules and the database")
    add("diff", _diff, "show what apply would change (exit 3 when anything would)")
    add("status", _status, "connector and task states (exit 3 unless all RUNNING)").add_argument(
        "--json", action="store_true", help="machine-readable output, full masked traces"
    )
    add("restart", _restart, "restart connectors and their tasks, wait RUNNING").add_argument(
        "--only-failed", action="store_true", help="restart only what is FAILED"
    )
    add("pause", _pause, "pause connectors (their slots then hold WAL)")
    add("resume", _resume, "resume paused or stopped connectors, wait RUNNING")
    add("delete", _delete, "unregister connectors (slot, publication, offsets kept)").add_argument(
        "--drop-slot",
        action="store_true",
        help="retire for good: also reset Connect offsets, drop the slot and the publication",
    )


def _masked(handler: Handler) -> Callable[[argparse.Namespace, FabricConfig], int]:
    """Run ``handler`` with a masker that knows every secret; mask every log line it causes and
    any error it raises."""

    @wraps(handler)
    def run(args: argparse.Namespace, cfg: FabricConfig) -> int:
        masker = Masker(
            cfg.spec_values[name] for name in cfg.secret_names if name in cfg.spec_values
        )
        log_filter = _MaskingFilter(masker)
        handlers = logging.getLogger().handlers
        for h in handlers:
            h.addFilter(log_filter)
        try:
            return handler(args, cfg, masker)
        except FabricError as exc:
            exc.args = tuple(masker.text(a) if isinstance(a, str) else a for a in exc.args)
            raise
        finally:
            for h in handlers:
                h.removeFilter(log_filter)

    return run


class _MaskingFilter(logging.Filter):
    """Masks a log record's final message, whichever library logged it."""

    def __init__(self, masker: Masker) -> None:
        super().__init__()
        self._masker = masker

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = self._masker.text(message)
        if masked != message:
            record.msg, record.args = masked, None
        return True


def _apply(args: argparse.Namespace, cfg: FabricConfig, masker: Masker) -> int:
    manager = _manager(args, cfg, masker)
    for spec in _rendered(args, cfg, masker):
        print(masker.text(_applied(manager.apply(spec))), flush=True)
    return 0


def _validate(args: argparse.Namespace, cfg: FabricConfig, masker: Masker) -> int:
    manager = _manager(args, cfg, masker)
    for spec in _rendered(args, cfg, masker):
        validation = manager.validate(spec)
        tables = ", ".join(t.qualified for t in validation.captured)
        print(masker.text(f"{spec.name}: valid; captures {tables}"), flush=True)
    return 0


def _diff(args: argparse.Namespace, cfg: FabricConfig, masker: Masker) -> int:
    manager = _manager(args, cfg, masker)
    different = False
    for spec in _rendered(args, cfg, masker):
        diff = manager.diff(spec)
        if diff.empty:
            print(f"{spec.name}: no differences")
            continue
        different = True
        head = "not registered; apply would create it" if not diff.registered else "differs"
        print(masker.text("\n    ".join([f"{spec.name}: {head}", *diff.lines()])), flush=True)
    return EXIT_DIFFERENT if different else 0


def _status(args: argparse.Namespace, cfg: FabricConfig, masker: Masker) -> int:
    manager = _manager(args, cfg, masker)
    statuses = [manager.status(name) for name, _ in _targets(args, cfg)]
    if args.json:
        print(masker.text(json.dumps([s.as_dict() for s in statuses], indent=2)))
    else:
        print(f"{'CONNECTOR':<24} {'STATE':<16} {'TASKS':<24} WORKER")
        for s in statuses:
            tasks = " ".join(f"{t.id}:{t.state}" for t in s.tasks) or "-"
            state = s.state or "not registered"
            print(masker.text(f"{s.name:<24} {state:<16} {tasks:<24} {s.worker_id or '-'}"))
            if s.failed:
                print(masker.text("    " + s.failure_report().replace("\n", "\n    ")))
    return 0 if all(s.is_all(RUNNING) for s in statuses) else EXIT_DIFFERENT


def _restart(args: argparse.Namespace, cfg: FabricConfig, masker: Masker) -> int:
    manager = _manager(args, cfg, masker)
    for name, _ in _targets(args, cfg):
        _show(masker, manager.restart(name, only_failed=args.only_failed))
    return 0


def _pause(args: argparse.Namespace, cfg: FabricConfig, masker: Masker) -> int:
    manager = _manager(args, cfg, masker)
    for name, _ in _targets(args, cfg):
        _show(masker, manager.pause(name))
    return 0


def _resume(args: argparse.Namespace, cfg: FabricConfig, masker: Masker) -> int:
    manager = _manager(args, cfg, masker)
    for name, _ in _targets(args, cfg):
        _show(masker, manager.resume(name))
    return 0


def _delete(args: argparse.Namespace, cfg: FabricConfig, masker: Masker) -> int:
    manager = _manager(args, cfg, masker)
    for name, template in _targets(args, cfg):
        # The spec is needed only to retire a connector Connect no longer knows.
        spec = _render(template, cfg, masker) if args.drop_slot and template else None
        result = manager.delete(name, spec=spec, drop_slot=args.drop_slot)
        print(masker.text(_deleted(result)), flush=True)
    return 0


def _manager(args: argparse.Namespace, cfg: FabricConfig, masker: Masker) -> ConnectorManager:
    client = ConnectClient(args.connect_url or cfg.endpoints.connect_url, masker=masker)

    def source(spec: ConnectorSpec) -> PostgresSource:
        where = str(spec.source) if spec.source else f"connector {spec.name}"
        params = SourceParams.from_config(spec.config, where)
        if cfg.connectors.source_host:
            params = dataclasses.replace(params, host=cfg.connectors.source_host)
        return PostgresSource(params, cfg.endpoints)

    timing = Timing(timeout_s=cfg.connectors.apply_timeout_s)
    return ConnectorManager(client, source, masker=masker, timing=timing)


def _rendered(args: argparse.Namespace, cfg: FabricConfig, masker: Masker) -> list[ConnectorSpec]:
    """The selected specs, all rendered before any is acted on (a missing value stops early)."""
    templates = [t for _, t in _targets(args, cfg, bare_names=False) if t is not None]
    return [_render(t, cfg, masker) for t in templates]


def _render(template: SpecTemplate, cfg: FabricConfig, masker: Masker) -> ConnectorSpec:
    spec = template.render(cfg.spec_values, secrets_file=cfg.stack.secrets_file)
    masker.add_config(spec.config)
    return spec


def _targets(
    args: argparse.Namespace, cfg: FabricConfig, *, bare_names: bool = True
) -> list[tuple[str, SpecTemplate | None]]:
    """(connector name, its spec if known) for each selector, or for every spec in the folder.

    With ``bare_names``, a name no spec defines is taken as a connector registered on Connect.
    """
    folder = cfg.connectors.specs_dir
    if not bare_names or not args.spec:
        return [(t.name, t) for t in select_specs(folder, args.spec)]
    known: dict[str, SpecTemplate] | None = None
    chosen: list[tuple[str, SpecTemplate | None]] = []
    for selector in args.spec:
        if selector.endswith(".json") or Path(selector).is_file():
            template = load_spec(Path(selector))
            chosen.append((template.name, template))
            continue
        if known is None:
            has_specs = folder.is_dir() and any(folder.glob("*.json"))
            known = {t.name: t for t in load_specs(folder)} if has_specs else {}
        chosen.append((selector, known.get(selector)))
    return chosen


def _applied(result: ApplyResult) -> str:
    text = f"{result.name}: {result.outcome.value}"
    if result.outcome is ApplyOutcome.UPDATED:
        keys = sorted({*result.diff.added, *result.diff.removed, *result.diff.changed})
        text += f" ({', '.join(keys)})"
    text += f"; {result.status.summary()}"
    if result.status.state != RUNNING:
        text += f"; left {result.status.state}: `fabric connectors resume {result.name}` runs it"
    if result.triggers_installed:
        text += f"; truncate triggers added on {', '.join(result.triggers_installed)}"
    return text


def _deleted(result: DeleteResult) -> str:
    if result.slot_outcome is None:
        if not result.deleted:
            return f"{result.name}: not registered; nothing deleted"
        return (
            f"{result.name}: deleted; slot {result.slot} and publication {result.publication} "
            f"kept (the slot holds WAL until dropped: "
            f"`fabric connectors delete --drop-slot {result.name}`)"
        )
    parts = [f"{result.name}: {'deleted' if result.deleted else 'not registered'}"]
    parts.append("Connect offsets reset" if result.offsets_reset else "no Connect offsets")
    parts.append(f"slot {result.slot} {result.slot_outcome.value}")
    dropped = "dropped" if result.publication_dropped else "absent"
    parts.append(f"publication {result.publication} {dropped}")
    return "; ".join(parts)


def _show(masker: Masker, status: ConnectorStatus) -> None:
    print(masker.text(f"{status.name}: {status.summary()}"), flush=True)
