"""The runtime every coordination worker shares: clock, settings, store glue, the runner."""
