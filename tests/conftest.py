"""The fixtures every tier shares live in tests/support/fixtures, registered here.

``broker``: a real RabbitMQ with a namespace of its own per test, cleaned up after.
``store``: a fresh SQLite file or PostgreSQL schema per test, on both adapters.
"""

pytest_plugins = ["tests.support.fixtures.broker", "tests.support.fixtures.store"]
