"""One worker replica as the bench runs it: ``workers.runtime.process`` with publishes counted.

python -m workers.bench.worker_proc --worker tasks --replica 0 --metrics-port 9101

Takes the same arguments as ``python -m workers.runtime.process``; see
:mod:`workers.bench.counting` for what it adds.
"""

from __future__ import annotations

from workers.bench.counting import install
from workers.runtime.process import main

if __name__ == "__main__":
    install()
    raise SystemExit(main())
