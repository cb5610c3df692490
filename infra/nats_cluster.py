"""A JetStream cluster of nats-server nodes on loopback: one configuration file per node, routes
between them, unique server names. Production runs three; the demo keeps one server.

Streams and consumers are placed on it with `FERMION_STREAM_REPLICAS=3` (every unit's bus settings)
and reached through every node's URL (`FERMION_NATS_URL=nats://a,nats://b,nats://c`), so losing
any one node loses no message and stops no client.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

import httpx

from .nats import NatsServer, ServerError

CLUSTER_NAME = "fermion"


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class NatsCluster:
    """`size` nodes under `home`: `home/<node>.conf`, `home/<node>/` (JetStream store), `home/<node>.log`."""

    def __init__(self, home: Path, *, size: int = 3, host: str = "127.0.0.1") -> None:
        self.home = home
        self.host = host
        self.names = [f"{CLUSTER_NAME}-{i + 1}" for i in range(size)]
        # Fixed ports, chosen once: routes name them, and a restarted node must come back on its own.
        self.ports = {n: (_free_port(host), _free_port(host), _free_port(host)) for n in self.names}
        self.nodes: dict[str, NatsServer] = {}

    @property
    def url(self) -> str:
        """Every node's client URL, comma-separated (what FERMION_NATS_URL takes)."""
        return ",".join(f"nats://{self.host}:{self.ports[n][0]}" for n in self.names)

    def config(self, name: str) -> str:
        """The configuration file of one node."""
        client, route, monitor = self.ports[name]
        routes = "\n".join(f"    nats-route://{self.host}:{self.ports[n][1]}" for n in self.names if n != name)
        return (
            f"server_name: {name}\n"
            f"listen: {self.host}:{client}\n"
            f"http: {self.host}:{monitor}\n"
            f'jetstream {{\n  store_dir: "{self.home / name}"\n}}\n'
            f"cluster {{\n  name: {CLUSTER_NAME}\n  listen: {self.host}:{route}\n  routes: [\n{routes}\n  ]\n}}\n"
        )

    def write_configs(self) -> list[Path]:
        """Write one configuration file per node; returns their paths."""
        self.home.mkdir(parents=True, exist_ok=True)
        paths = []
        for name in self.names:
            path = self.home / f"{name}.conf"
            path.write_text(self.config(name))
            paths.append(path)
        return paths

    def start(self, timeout_s: float = 60.0) -> NatsCluster:
        """Start every node and return once JetStream is healthy on all of them (a meta leader elected)."""
        self.write_configs()
        try:
            for name in self.names:
                self.start_node(name, wait=False)
            self.wait_healthy(timeout_s)
        except BaseException:
            self.stop()
            raise
        return self

    def start_node(self, name: str, *, wait: bool = True, timeout_s: float = 60.0) -> NatsServer:
        """Start (or start again) one node, on its own ports and store."""
        node = NatsServer(
            self.home / name,
            host=self.host,
            port=self.ports[name][0],
            log_file=self.home / f"{name}.log",
            config=self.home / f"{name}.conf",
        ).start()
        self.nodes[name] = node
        if wait:
            self.wait_healthy(timeout_s, names=[name])
        return node

    def stop_node(self, name: str) -> None:
        """Stop one node (SIGTERM; the rest of the cluster carries on)."""
        if node := self.nodes.pop(name, None):
            node.stop()

    def wait_healthy(self, timeout_s: float, names: list[str] | None = None) -> None:
        """Wait until each node's monitoring /healthz says JetStream is usable."""
        deadline = time.monotonic() + timeout_s
        for name in names or self.names:
            url = f"http://{self.host}:{self.ports[name][2]}/healthz"
            while True:
                try:
                    if httpx.get(url, timeout=1.0).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise ServerError(f"{name} not healthy after {timeout_s:.0f}s; see {self.home / name}.log")
                time.sleep(0.1)

    def stop(self) -> None:
        """Stop every node."""
        for name in list(self.nodes):
            self.stop_node(name)

    def __enter__(self) -> NatsCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main() -> None:
    """`python -m fermion.infra.nats_cluster DIR [--size 3]`: run a cluster on loopback until Ctrl-C."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("home", type=Path, help="where the node configurations, stores and logs go")
    parser.add_argument("--size", type=int, default=3)
    args = parser.parse_args()
    with NatsCluster(args.home.resolve(), size=args.size) as cluster:
        print(f"FERMION_NATS_URL={cluster.url} FERMION_STREAM_REPLICAS={args.size}", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
