"""The agent registry: who is in the fleet, what each can do, and who went silent."""
