"""`fabric serve`: run one fabric instance (materializer + gRPC query service) until SIGTERM."""

from __future__ import annotations

import argparse
import signal
import threading
from dataclasses import replace
from pathlib import Path
from types import FrameType

from fabric.config import FabricConfig, MaterializerSettings
from fabric.errors import ConfigError
from fabric.serve.server import FabricServer


def register(areas: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = areas.add_parser("serve", help="run a fabric instance: materializer + query service")
    parser.add_argument("--instance-id", help="static group member id (FABRIC_INSTANCE_ID)")
    parser.add_argument("--group", help="the fabric's consumer group (FABRIC_GROUP)")
    parser.add_argument(
        "--state-dir", help="this instance's stores (default: <state>/instances/<id>)"
    )
    parser.add_argument("--host", help="address to bind (FABRIC_GRPC_HOST, default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="gRPC port (FABRIC_GRPC_PORT, default 27070)")
    parser.add_argument(
        "--peer-port",
        type=int,
        help="port other instances forward lookups to, on --host (FABRIC_PEER_PORT, default:"
        " the gRPC port + 100)",
    )
    parser.add_argument(
        "--advertise", help="host:port other instances and clients use (default: host:port)"
    )
    parser.add_argument("--metrics-port", type=int, help="serve Prometheus /metrics on this port")
    parser.add_argument(
        "--standby-replicas",
        type=int,
        help="standby copies of each partition kept by other instances, served from like the"
        " owner's (FABRIC_STANDBY_REPLICAS, default 0)",
    )
    parser.set_defaults(handler=_serve)


def _serve(args: argparse.Namespace, cfg: FabricConfig) -> int:
    cfg = configured(cfg, args)
    server = FabricServer(cfg, advertised_endpoint=args.advertise or None)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    server.start()
    print(f"fabric instance {server.me.instance_id} serving on {server.endpoint}", flush=True)
    # A bounded wait: a signal the kernel delivers to another thread runs its Python handler
    # only when the main thread wakes, and an unbounded wait may never wake.
    while not stop.wait(0.5):
        pass
    server.stop()
    return 0


def instance_settings(
    settings: MaterializerSettings, args: argparse.Namespace
) -> MaterializerSettings:
    """``settings`` with an instance's flags (group, id, state folder, metrics port) applied."""
    if getattr(args, "group", None):
        settings = replace(
            settings, group=args.group, dead_letter_topic=f"{args.group}.dead-letters"
        )
    if args.instance_id:
        settings = replace(
            settings,
            instance_id=args.instance_id,
            state_dir=settings.instances_dir / args.instance_id,
        )
    if args.state_dir:
        settings = replace(settings, state_dir=Path(args.state_dir).absolute())
    if args.metrics_port is not None:
        settings = replace(settings, metrics_port=args.metrics_port)
    replicas = getattr(args, "standby_replicas", None)
    if replicas is not None:
        if replicas < 0:
            raise ConfigError(f"--standby-replicas must be 0 or more, got {replicas}")
        settings = replace(settings, standby_replicas=replicas)
    return settings


def configured(cfg: FabricConfig, args: argparse.Namespace) -> FabricConfig:
    """``cfg`` with the instance's flags applied over the environment's settings."""
    materializer = instance_settings(cfg.materializer, args)
    serve = cfg.serve
    if args.host:
        serve = replace(serve, host=args.host)
    if args.port is not None:
        serve = replace(serve, port=args.port)
    peer_port = getattr(args, "peer_port", None)
    if peer_port is not None:
        if not 1 <= peer_port <= 65535:
            raise ConfigError(f"--peer-port must be a TCP port (1-65535), got {peer_port}")
        serve = replace(serve, peer_port=peer_port)
    return replace(cfg, materializer=materializer, serve=serve)
