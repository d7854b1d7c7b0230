"""The reliability and security suite (`rankcast selftest`): faults and attacks against real brokers and
real device processes, with a report of what was tried and what held.

case (what a case is and reports) and runner (runs them, the table, selftest.json); one module per group
of cases: power_loss, broker_restart, disk_full, hostile (with hostile_attacks), topic_ids, acl_matrix,
load. Everything is stood up with simulator.testbed; docs/reliability.md records the runs.
"""
