"""A local Kafka 4.x cluster: N KRaft nodes in combined mode (broker + controller) on loopback.

Each node is a LocalBroker (same jars, logging and process handling) with its own data dir,
client port and controller port. The quorum is static (``controller.quorum.voters`` listing
every node, storage formatted with one shared cluster id and no quorum flag), because a
static voter set needs no post-start reconfiguration and a killed voter simply rejoins on
restart. Internal topics get replication factor ``min(n, 3)`` and ``min.insync.replicas`` 2, so
with three nodes any one of them can be killed (SIGKILL) while acks=all producers carry on.

Fault tests use ``kill(i)`` and ``start_node(i)``; the node keeps its data dir and ports, so it
rejoins as the same broker and catches up from the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError

from kafstash.infra.kafka.broker import (
    _HOST,
    BrokerError,
    LocalBroker,
    _free_ports,
    _new_cluster_id,
    ensure_jars,
)

log = logging.getLogger(__name__)

_PROBE_TIMEOUT = 5.0
_POLL_INTERVAL = 0.3


class ClusterNode(LocalBroker):
    """One voter of a static KRaft quorum; everything else as LocalBroker."""

    def __init__(
        self,
        data_dir: Path,
        *,
        node_id: int,
        port: int,
        controller_port: int,
        voters: str,
        cluster_id: str,
        replication: int,
        heap: str,
        extra_properties: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(
            data_dir,
            port=port,
            controller_port=controller_port,
            heap=heap,
            extra_properties=extra_properties,
        )
        self.node_id = node_id
        self.voters = voters
        self.cluster_id = cluster_id
        self.replication = replication

    def _properties(self) -> dict[str, str]:
        props = super()._properties()
        # Static quorum: voters and bootstrap servers are two different modes; never mix them.
        props.pop("controller.quorum.bootstrap.servers", None)
        rf = str(self.replication)
        isr = str(min(2, self.replication))
        props |= {
            "node.id": str(self.node_id),
            "controller.quorum.voters": self.voters,
            "offsets.topic.replication.factor": rf,
            "transaction.state.log.replication.factor": rf,
            "transaction.state.log.min.isr": isr,
            "share.coordinator.state.topic.replication.factor": rf,
            "share.coordinator.state.topic.min.isr": isr,
            "default.replication.factor": rf,
            "min.insync.replicas": isr,
            # A killed node is fenced (and its partitions' leadership moved) after this long,
            # and a restarted one cannot register before its old session expires: keep it short.
            "broker.session.timeout.ms": "3000",
            "broker.heartbeat.interval.ms": "500",
            # The one remaining follower would otherwise be dropped from the ISR slowly.
            "replica.lag.time.max.ms": "5000",
            "num.replica.fetchers": "1",
        }
        return props | self.extra_properties

    def _format_args(self) -> list[str]:
        # With controller.quorum.voters set, format takes no quorum flag; every node must share
        # the cluster id.
        return ["-t", self.cluster_id]

    def __repr__(self) -> str:
        state = f"pid={self.pid}" if self.is_running() else "stopped"
        return f"ClusterNode({self.node_id}, port={self._port}, {state})"


class LocalCluster:
    """``n`` combined KRaft nodes on 127.0.0.1 under ``data_dir/node-<id>``; see module doc."""

    def __init__(
        self,
        data_dir: Path,
        n: int = 3,
        *,
        heap: str = "384m",
        extra_properties: Mapping[str, str] | None = None,
    ) -> None:
        if n < 1:
            raise ValueError("a cluster needs at least one node")
        self.data_dir = Path(data_dir).expanduser().resolve()
        self.n = n
        self.heap = heap
        self.extra_properties = dict(extra_properties or {})
        self.nodes: list[ClusterNode] = []
        self.startup_seconds: float | None = None

    # -- addresses

    @property
    def replication(self) -> int:
        return min(self.n, 3)

    @property
    def bootstrap(self) -> str:
        """Every node's client address, comma-separated, for ``bootstrap_servers``."""
        if not self.nodes:
            raise BrokerError("the cluster has not been started")
        return ",".join(node.bootstrap for node in self.nodes)

    def node(self, node_id: int) -> ClusterNode:
        for node in self.nodes:
            if node.node_id == node_id:
                return node
        raise KeyError(node_id)

    def running(self) -> list[ClusterNode]:
        return [node for node in self.nodes if node.is_running()]

    def is_running(self) -> bool:
        """Every node is up (a killed node makes this False until start_node)."""
        return bool(self.nodes) and all(node.is_running() for node in self.nodes)

    @property
    def logs_dir(self) -> Path:
        """Each node logs under ``node-<id>/logs`` in here."""
        return self.data_dir

    # -- lifecycle

    def start(self, timeout: float = 120) -> None:
        """Format (first time) and start every node, then wait until all are registered."""
        began = time.monotonic()
        ensure_jars()
        attempts_left = 2
        while True:
            if not self.nodes:
                self._refuse_old_stores()
                self._plan()
            try:
                self._start_nodes([node for node in self.nodes if not node.is_running()], timeout)
                break
            except BrokerError as exc:
                self._kill_all()
                fresh_clash = "already in use" in str(exc) and self.startup_seconds is None
                attempts_left -= 1
                if not (fresh_clash and attempts_left):
                    raise
                # The free-port probe is racy; the stores were formatted moments ago and hold
                # nothing, so re-plan on new ports (the voters are part of the format).
                log.warning("a cluster node lost a port race; retrying on new ports")
                for node in self.nodes:
                    shutil.rmtree(node.data_dir, ignore_errors=True)
                self.nodes = []
        self.wait_brokers(self.n, deadline=began + timeout)
        self.startup_seconds = time.monotonic() - began
        log.info("Kafka cluster of %d ready at %s in %.1fs", self.n, self.bootstrap,
                 self.startup_seconds)  # fmt: skip

    def _refuse_old_stores(self) -> None:
        # Ports and voters are chosen afresh for each LocalCluster; an old store's quorum state
        # would name other endpoints. Restarting single nodes (start_node) keeps their ports.
        old = sorted(self.data_dir.glob("node-*/data/meta.properties"))
        if old:
            raise BrokerError(
                f"{self.data_dir} holds a cluster from an earlier run ({old[0].parent.parent}); "
                "a LocalCluster always starts fresh: remove it or choose another directory"
            )

    def _plan(self) -> None:
        ports = _free_ports(2 * self.n)
        ids = range(1, self.n + 1)
        voters = ",".join(f"{i}@{_HOST}:{ports[2 * k + 1]}" for k, i in enumerate(ids))
        cluster_id = _new_cluster_id()
        self.nodes = [
            ClusterNode(
                self.data_dir / f"node-{i}",
                node_id=i,
                port=ports[2 * k],
                controller_port=ports[2 * k + 1],
                voters=voters,
                cluster_id=cluster_id,
                replication=self.replication,
                heap=self.heap,
                extra_properties=self.extra_properties,
            )
            for k, i in enumerate(ids)
        ]

    def _start_nodes(self, nodes: list[ClusterNode], timeout: float) -> None:
        # Concurrently: a voter cannot become ready until a majority of the quorum is up.
        with ThreadPoolExecutor(max_workers=max(1, len(nodes))) as pool:
            futures = [pool.submit(node.start, timeout) for node in nodes]
            errors = [exc for f in futures if (exc := f.exception()) is not None]
        if errors:
            raise BrokerError("; ".join(str(e) for e in errors)) from errors[0]

    def kill(self, node_id: int) -> None:
        """SIGKILL one node, as a crash would."""
        self.node(node_id).kill()

    def start_node(self, node_id: int, timeout: float = 90) -> None:
        """Start a stopped or killed node again on its own data dir and ports."""
        self.node(node_id).start(timeout)

    def stop(self, timeout: float = 30) -> None:
        """Controlled shutdown of every node (in parallel: the last voters wait for each other)."""
        with ThreadPoolExecutor(max_workers=max(1, len(self.nodes))) as pool:
            list(pool.map(lambda node: node.stop(timeout), self.nodes))

    def _kill_all(self) -> None:
        for node in self.nodes:
            node.kill()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- metadata

    def wait_brokers(self, count: int, *, deadline: float | None = None) -> None:
        """Block until ``count`` brokers are registered and unfenced (in client metadata)."""
        end = deadline if deadline is not None else time.monotonic() + 60
        while True:
            try:
                seen = len(self.describe_cluster().get("brokers", []))
            except (KafkaError, OSError, TimeoutError):
                seen = -1
            if seen == count:
                return
            if time.monotonic() >= end:
                raise BrokerError(f"expected {count} brokers in metadata, saw {seen}")
            time.sleep(_POLL_INTERVAL)

    def describe_cluster(self) -> dict[str, Any]:
        info: dict[str, Any] = _run(self._admin_call(lambda admin: admin.describe_cluster()))
        return info

    def partitions(self, topic: str) -> dict[int, tuple[int, list[int]]]:
        """partition → (leader node id, in-sync replica ids) of one topic."""
        topics = _run(self._admin_call(lambda admin: admin.describe_topics([topic])))
        out: dict[int, tuple[int, list[int]]] = {}
        for t in topics:
            for p in t["partitions"]:
                out[int(p["partition"])] = (int(p["leader"]), [int(r) for r in p["isr"]])
        return out

    def topic_config(self, topic: str) -> dict[str, str]:
        """The topic's effective configuration (name → value), e.g. ``min.insync.replicas``."""
        resource = ConfigResource(ConfigResourceType.TOPIC, topic)
        responses = _run(self._admin_call(lambda admin: admin.describe_configs([resource])))
        out: dict[str, str] = {}
        for response in responses:
            for res in response.to_object()["resources"]:
                for entry in res["config_entries"]:
                    out[entry["config_names"]] = entry["config_value"]
        return out

    async def _admin_call(self, call: Any) -> Any:
        bootstrap = ",".join(node.bootstrap for node in self.running()) or self.bootstrap
        admin = AIOKafkaAdminClient(
            bootstrap_servers=bootstrap,
            client_id="kafstash-cluster-probe",
            request_timeout_ms=int(_PROBE_TIMEOUT * 1000),
        )
        try:
            await asyncio.wait_for(admin.start(), _PROBE_TIMEOUT)
            return await asyncio.wait_for(call(admin), _PROBE_TIMEOUT)
        finally:
            with contextlib.suppress(KafkaError, OSError):
                await admin.close()


def _run(coro: Any) -> Any:
    # A fresh thread owns its own event loop, so this works when called from a coroutine too.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="kafka-cluster") as pool:
        return pool.submit(asyncio.run, coro).result()
