"""A fabric instance: the materializer and the gRPC query service, started and stopped together.

Health. The standard ``grpc.health.v1`` service reports NOT_SERVING until the instance has joined
the group and every partition it holds is ACTIVE, and again from the moment it starts stopping.
Server reflection is on, so ``grpcurl`` works without the .proto files.

Stopping (SIGTERM). Health goes NOT_SERVING; the materializer stops consuming and leaves the
group; the instance keeps answering (from its stores, with their lag in every answer) until the
group has given its partitions to other instances and they are ACTIVE, or for at most
``handover_timeout_s``; then in-flight calls drain and the server stops.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent import futures
from dataclasses import replace

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from fabric import db
from fabric.catalog import Catalog
from fabric.config import FabricConfig
from fabric.core.placement import standby_partitions
from fabric.errors import PortInUseError
from fabric.materialize.instance import Materializer
from fabric.materialize.membership import HostInfo
from fabric.materialize.metrics import serve_metrics
from fabric.rpc.v1 import fabric_pb2 as pb
from fabric.serve.forwarding import ForwardError, ForwardLinks, ForwardServer
from fabric.serve.handlers import Refusal, add_fabric_service
from fabric.serve.peers import Peers
from fabric.serve.routing import FORWARDED
from fabric.serve.service import FabricService
from fabric.serve.topology import AbsenceWatch, GroupTopology, TopologySnapshot

log = logging.getLogger(__name__)

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Fabric"].full_name
_HEALTH_EVERY_S = 0.25
_DRAIN_S = 5.0
_REFUSE_S = 1.0
_HANDOVER_POLL_S = 0.5
_TOPOLOGY_EVERY_S = 2.0
# Missing from the group this long (three session timeouts; one, holding no partition): the
# consumer is replaced.
_ABSENT_REJOIN_S = 30.0
_ABSENT_EMPTY_REJOIN_S = 10.0


class FabricServer:
    def __init__(self, cfg: FabricConfig, advertised_endpoint: str | None = None) -> None:
        serve = cfg.serve
        self.endpoint = (
            advertised_endpoint or cfg.materializer.advertised_endpoint or serve.endpoint
        )
        self._cfg = cfg
        self._catalog = Catalog(lambda: db.connect(cfg.endpoints))
        self._refusal = Refusal()
        self._server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=serve.workers, thread_name_prefix="grpc"),
            # Without this, a second server binds the same port silently and steals half the calls.
            options=[("grpc.so_reuseport", 0)],
        )
        try:
            bound = self._server.add_insecure_port(serve.endpoint)
        except RuntimeError:
            bound = 0
        if not bound:
            raise PortInUseError(
                f"cannot serve gRPC on {serve.endpoint}: the port is in use or the address is "
                "not local; choose another with --port or FABRIC_GRPC_PORT"
            )
        self._forward_server = ForwardServer(serve.host, serve.forward_port, self._answer_forwarded)
        settings = replace(
            cfg.materializer,
            advertised_endpoint=self.endpoint,
            peer_port=self._forward_server.port,
        )
        self.me = HostInfo(settings.instance_id, self.endpoint, self._forward_server.port)
        self.materializer = Materializer(
            settings, cfg.endpoints.kafka_bootstrap, self._catalog.codec
        )
        self.topology = GroupTopology(cfg.endpoints.kafka_bootstrap, settings.group)
        self.materializer.add_rebalance_listener(self.topology.invalidate)
        self._peers = Peers()
        self._links = ForwardLinks()
        self._service = FabricService(
            self.me, self.materializer, self._catalog, self.topology, self._peers, links=self._links
        )
        add_fabric_service(self._service, self._server, self._refusal)
        self._health = health.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self._health, self._server)
        reflection.enable_server_reflection(
            (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), self._server
        )
        self._stop_materializer = threading.Event()
        self._release = threading.Event()
        self._stopping = threading.Event()
        self._stopped = threading.Event()
        self._set_health(serving=False)
        self._threads: list[threading.Thread] = []
        if settings.metrics_port is not None:
            serve_metrics(self.materializer.status, settings.metrics_host, settings.metrics_port)

    def start(self) -> None:
        self._server.start()
        self._forward_server.start()
        self._spawn(
            "materializer", lambda: self.materializer.run(self._stop_materializer, self._release)
        )
        self._spawn("health", self._watch_health)
        log.info(
            "instance serving instance=%s endpoint=%s group=%s",
            self.me.instance_id,
            self.endpoint,
            self.materializer.settings.group,
        )

    def stop(self) -> None:
        """Stop gracefully: NOT_SERVING, leave the group, hand over, drain, stop."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        self._set_health(serving=False)
        log.info("instance stopping instance=%s", self.me.instance_id)
        self._stop_materializer.set()
        self._hand_over()
        self._release.set()
        for thread in self._threads:
            thread.join(timeout=30)
        self._refusal.on = True
        time.sleep(_REFUSE_S)  # calls in flight finish; clients told UNAVAILABLE move on
        self._forward_server.stop()
        self._server.stop(grace=_DRAIN_S).wait()
        self._service.close()
        self._peers.close()
        self._links.close()
        self._stopped.set()
        log.info("instance stopped instance=%s", self.me.instance_id)

    def _hand_over(self) -> None:
        """Keep serving each held partition until its new owner is ACTIVE (or this instance
        came back under a new process, which needs the stores), at most handover_timeout_s."""
        member_id = self.materializer.member_id
        deadline = time.monotonic() + self._cfg.serve.handover_timeout_s
        snapshot = self.topology.refresh(max_age_s=0.0)
        peers = [h for h in snapshot.instances if h.instance_id != self.me.instance_id]
        # Asked once, at the start: a peer taking partitions over goes NOT_SERVING while it
        # restores them, which must not end the handover it is part of.
        if not any(self._serving(peer) for peer in peers):
            log.info("no serving instance in the group to hand over to")
            return
        while time.monotonic() < deadline:
            held = self.materializer.held_partitions()
            if not held:
                return
            snapshot = self.topology.refresh(max_age_s=0.0)
            if snapshot.member_ids.get(self.me.instance_id, member_id) != member_id:
                log.info("this instance restarted elsewhere; letting go of every partition")
                return
            states = self._owner_states(snapshot.instances)
            for topic, partition in held:
                owner = snapshot.owner(topic, partition)
                ready = states.get((topic, partition)) == "ACTIVE"
                if owner is not None and owner != self.me and ready:
                    self.materializer.let_go(topic, partition)
            time.sleep(_HANDOVER_POLL_S)
        log.warning(
            "handover timed out after %.0fs; partitions left: %d",
            self._cfg.serve.handover_timeout_s,
            len(self.materializer.held_partitions()),
        )

    def _serving(self, peer: HostInfo) -> bool:
        """Whether a peer answers its health check SERVING: one that is stopping too (or still
        restoring) will not take partitions over soon."""
        try:
            answer = health_pb2_grpc.HealthStub(self._peers.channel(peer.endpoint)).Check(
                health_pb2.HealthCheckRequest(), timeout=1.0
            )
        except grpc.RpcError:
            return False
        return bool(answer.status == health_pb2.HealthCheckResponse.SERVING)

    def _owner_states(self, instances: Sequence[HostInfo]) -> dict[tuple[str, int], str]:
        """The state of every partition, as each other instance reports its own."""
        states: dict[tuple[str, int], str] = {}
        for host in instances:
            if host == self.me:
                continue
            try:
                topology = self._peers.stub(host.endpoint).GetTopology(
                    pb.GetTopologyRequest(),
                    timeout=2.0,
                    metadata=((FORWARDED, self.me.instance_id),),
                )
            except grpc.RpcError:
                continue
            for table in topology.tables:
                for part in table.partitions:
                    if part.owner == host.instance_id:
                        states[(table.topic, part.partition)] = part.state
        return states

    def _answer_forwarded(self, method: int, body: bytes, deadline: float) -> bytes:
        if self._refusal.on:
            raise ForwardError(
                grpc.StatusCode.UNAVAILABLE, "this instance is stopping; ask another one"
            )
        return self._service.answer_forwarded(method, body, deadline)

    def wait(self, timeout: float | None = None) -> bool:
        return self._stopped.wait(timeout)

    def _spawn(self, name: str, target: Callable[[], None]) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _watch_health(self) -> None:
        absence = AbsenceWatch(_ABSENT_REJOIN_S, _ABSENT_EMPTY_REJOIN_S)
        while not self._stopping.is_set():
            self._set_health(serving=self.materializer.all_active())
            # Also keeps the topology's memory of previous owners current, for handovers.
            snapshot = self.topology.refresh(max_age_s=_TOPOLOGY_EVERY_S)
            self._place_standbys(snapshot)
            self._release_kept_partitions(snapshot)
            holding = bool(self.materializer.held_partitions())
            if absence.observe(snapshot, self.me.instance_id, time.monotonic(), holding=holding):
                log.warning(
                    "this instance is not a member of group %s (holding %s partitions); rejoining",
                    self.materializer.settings.group,
                    "its" if holding else "no",
                )
                self.materializer.request_rejoin("not a member of the group")
            time.sleep(_HEALTH_EVERY_S)

    def _place_standbys(self, snapshot: TopologySnapshot) -> None:
        replicas = self.materializer.settings.standby_replicas
        if not replicas or not snapshot.owners:
            return  # none wanted, or no group description yet: keep what is held
        owners = {key: host.instance_id for key, host in snapshot.owners.items()}
        instances = [host.instance_id for host in snapshot.instances]
        placed = standby_partitions(owners, instances, self.me.instance_id, replicas)
        # A partition without an owner is being moved (its owner left or died): the standby
        # held here is what serves it until then, and may be what it is moved to.
        moving = {key for key in self.materializer.held_standbys() if key not in owners}
        self.materializer.want_standbys(placed | moving)

    def _release_kept_partitions(self, snapshot: TopologySnapshot) -> None:
        """Let go of each partition the group moved away from this instance once its new owner
        serves it (or after ``handover_timeout_s``); until then lookups are answered here."""
        kept = self.materializer.kept_for_new_owners()
        if not kept:
            return
        states = self._owner_states(snapshot.instances)
        limit = self._cfg.serve.handover_timeout_s
        now = time.monotonic()
        for (topic, partition), since in kept.items():
            owner = snapshot.owner(topic, partition)
            taken = owner is not None and owner != self.me
            if (taken and states.get((topic, partition)) == "ACTIVE") or now - since > limit:
                log.info(
                    "letting go of a revoked partition topic=%s partition=%d owner=%s",
                    topic,
                    partition,
                    owner.instance_id if owner else None,
                )
                self.materializer.release_kept(topic, partition)

    def _set_health(self, *, serving: bool) -> None:
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving and not self._stopping.is_set()
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        self._health.set("", status)
        self._health.set(SERVICE_NAME, status)
