"""The allocator: places ready tasks on agents and grants leases on shared resources."""
