"""A registry writer in its own OS process, for the concurrent-writers tests.

``python -m tests.registry_worker REGISTRY_URI COUNT WORKER START_AT [PROMOTE_EVERY]``
waits until the wall clock reaches START_AT (so every worker starts at once),
registers COUNT versions of model ``spira``, promotes every PROMOTE_EVERY-th
one, and prints one JSON line: the versions it got and its promotions.
"""
from __future__ import annotations

import json
import sys
import time


def main(argv: list[str]) -> int:
    uri, count, worker, start_at = argv[0], int(argv[1]), argv[2], float(argv[3])
    promote_every = int(argv[4]) if len(argv) > 4 else 0
    from spira_lib.bootstrap import open_registry

    reg = open_registry(uri)
    time.sleep(max(0.0, start_at - time.time()))
    got, promoted = [], []
    t0 = time.perf_counter()
    for i in range(count):
        payload = f"{worker}-{i}".encode()
        mv = reg.register("spira", {"model.pt": payload, "model_card.md": b"# card\n"},
                          {"training_key": f"{worker}-{i}", "worker": worker}, actor=f"worker-{worker}")
        got.append(mv.version)
        if promote_every and (i + 1) % promote_every == 0:
            reg.promote("spira", mv.version, reason=f"worker {worker} promotes", actor=f"worker-{worker}")
            promoted.append(mv.version)
    print(json.dumps({"worker": worker, "versions": got, "promoted": promoted,
                      "seconds": round(time.perf_counter() - t0, 2)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
