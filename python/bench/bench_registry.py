"""Calls per second through isek_rs's classes vs ISEK 0.2.1's original classes, on
the same center and the same etcd, in one run: register, renew, and listing 1,000
nodes. Also the time to import each package.

    python python/bench/bench_registry.py --center-port P --etcd http://127.0.0.1:Q

(Start a center with `isek center --listen 127.0.0.1:0 --in-memory` and an etcd on a
free port first; see the README.) Sequential calls from one thread: this measures the
per-call cost of each client, not the servers' capacity (crates/isek-bench does that).
"""

import argparse
import logging
import subprocess
import sys
import time
import uuid

logging.getLogger("isek").setLevel(logging.CRITICAL + 1)
logging.getLogger("isek_rs").setLevel(logging.CRITICAL + 1)


def rate(calls, action):
    start = time.perf_counter()
    for i in range(calls):
        action(i)
    return calls / (time.perf_counter() - start)


def measure(name, registry, calls, list_calls, prefix):
    ids = [f"{prefix}-{i:05}" for i in range(max(calls, 1000))]
    card = {"name": "bench", "url": "http://127.0.0.1:9000", "skills": ["a", "b"]}
    register = rate(calls, lambda i: registry.register_node(ids[i], "127.0.0.1", 9000, card))
    renew = rate(calls, lambda i: registry.lease_refresh(ids[i]))
    for i in range(calls, 1000):
        registry.register_node(ids[i], "127.0.0.1", 9000, card)
    assert len([k for k in registry.get_available_nodes() if k.startswith(prefix)]) == 1000
    listing = rate(list_calls, lambda i: registry.get_available_nodes())
    for node_id in ids[:1000]:
        try:
            registry.deregister_node(node_id)
        except Exception:  # noqa: BLE001 - cleanup only
            pass
    print(f"| {name} | {register:,.0f} | {renew:,.0f} | {listing:,.1f} |", flush=True)


def import_time(module):
    code = f"import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"
    runs = [float(subprocess.check_output([sys.executable, "-c", code], text=True)) for _ in range(5)]
    return min(runs)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--center-port", type=int, required=True)
    parser.add_argument("--etcd", required=True, help="http://127.0.0.1:PORT")
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--list-calls", type=int, default=20)
    args = parser.parse_args()

    import isek_rs
    from isek.node.etcd_registry import EtcdRegistry
    from isek.node.isek_center_registry import IsekCenterRegistry

    logging.getLogger("isek").setLevel(logging.CRITICAL + 1)  # isek.utils.log set INFO

    host, port = args.etcd.rsplit("//", 1)[1].split(":")
    print("| client | register/s | renew/s | list of 1k/s |")
    print("|---|---|---|---|")
    run = uuid.uuid4().hex[:6]
    measure("original IsekCenterRegistry", IsekCenterRegistry("127.0.0.1", args.center_port),
            args.calls, args.list_calls, f"o{run}")
    measure("isek_rs IsekCenterRegistry", isek_rs.IsekCenterRegistry("127.0.0.1", args.center_port),
            args.calls, args.list_calls, f"r{run}")
    measure("original EtcdRegistry", EtcdRegistry(host, int(port), parent_node_id=f"o{run}"),
            args.calls, args.list_calls, f"o{run}")
    measure("isek_rs EtcdRegistry", isek_rs.EtcdRegistry(host, int(port), parent_node_id=f"r{run}"),
            args.calls, args.list_calls, f"r{run}")
    print()
    print(f"import isek_rs: {import_time('isek_rs') * 1000:.0f} ms; "
          f"import isek.node.isek_center_registry, isek.node.etcd_registry: "
          f"{import_time('isek.node.isek_center_registry, isek.node.etcd_registry') * 1000:.0f} ms")


if __name__ == "__main__":
    main()
