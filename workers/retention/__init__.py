"""Retention: ended tasks leave the hot store for an archive; processed-message ids expire.

policy.py (settings, the duplicate horizon), archive.py (the gzip JSON Lines format),
job.py (one run), service.py (the periodic run inside the workers).
"""
