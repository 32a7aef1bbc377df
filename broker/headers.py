"""Header names rallypoint writes on messages. Dead-letter tools read them back."""

ATTEMPT = "x-rally-attempt"  # 1 on the first delivery; grows with each retry through a delay queue
TARGET_QUEUE = "x-rally-queue"  # the work queue a retried message goes back to
TRACEPARENT = "traceparent"  # W3C trace context

# set on every dead letter rallypoint publishes
DL_REASON = "x-rally-reason"
DL_ERROR = "x-rally-error"
DL_ERROR_TYPE = "x-rally-error-type"
DL_ERRORS = "x-rally-errors"  # JSON list of {loc, msg} for invalid messages
DL_QUEUE = "x-rally-dead-queue"
DL_EXCHANGE = "x-rally-original-exchange"
DL_ROUTING_KEY = "x-rally-original-routing-key"
DL_ATTEMPTS = "x-rally-attempts"
DL_FIRST_DEATH = "x-rally-first-death-at"
DL_LAST_DEATH = "x-rally-dead-at"
DL_WORKER = "x-rally-worker"
DL_REPLICA = "x-rally-replica"
DL_TYPE = "x-rally-type"
