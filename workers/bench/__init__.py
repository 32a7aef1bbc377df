"""`rally bench`: rallypoint measured beside the raw broker and Celery, on the same RabbitMQ.

One module per part: the floor (raw aio-pika), rallypoint (real worker
processes and SDK agents), the Celery peer, scaling over replicas, the store,
memory; stats, the report and the chart turn their runs into figures.
"""
