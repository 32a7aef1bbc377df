"""The app the Celery peer's worker process runs: ``celery -A workers.bench.celery_worker``.

Its own module, so that importing the bench (and so ``rally``) never needs Celery.
"""

from __future__ import annotations

import os

from workers.bench.celery_app import BROKER_ENV, QUEUE_ENV, make_app

app = make_app(os.environ[BROKER_ENV], os.environ[QUEUE_ENV])
