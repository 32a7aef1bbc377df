"""`rally conformance`: drive any agent implementation through the protocol against a
private fleet, and judge each scenario from the event history (docs/protocol.md,
"Checking an implementation")."""
