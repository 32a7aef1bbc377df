"""The task manager: every task's lifecycle, retries, time-outs, dependencies and outcomes."""
