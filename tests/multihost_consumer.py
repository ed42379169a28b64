"""A consumer on its own host: watch one data node and print what it sees.

``python tests/multihost_consumer.py NAME SECONDS`` connects with the
``SISOCK_*`` settings of its environment and, every 0.1 s until SECONDS
have passed, prints a JSON line ``{"t", "listed", "samples"}``: whether
the hub lists NAME and how many samples a downsampled ``get_data`` on it
returned (``null`` if it failed). Connection failures print ``{"t",
"error"}`` and it connects again. Runs in a network namespace started by
``tests/test_multihost.py``.
"""

from __future__ import annotations

import json
import sys
import time

from sisock.client import ClientError, connect


def main(name: str, seconds: float) -> int:
    stop = time.time() + seconds
    while time.time() < stop:
        try:
            with connect(timeout=5) as c:
                while time.time() < stop:
                    listed = name in {n["name"] for n in c.nodes()}
                    samples = None
                    if listed:
                        try:
                            r = c.get_data(name, ["az"], -600, 0, min_stride=10.0, timeout=5)
                            samples = len(r.data["az"])
                        except ClientError:
                            pass
                    print(json.dumps({"t": time.time(), "listed": listed, "samples": samples}), flush=True)
                    time.sleep(0.1)
        except ClientError as exc:
            print(json.dumps({"t": time.time(), "error": str(exc)[:200]}), flush=True)
            time.sleep(0.5)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], float(sys.argv[2])))
