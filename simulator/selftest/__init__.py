"""`rankcast selftest`: the reliability and security suite — faults, hostile input, a report of what was tried.

Each module holds one group of cases (power loss, broker restart, disk full, hostile input, the ACL
matrix, load); simulator.selftest.runner runs them and prints the table that docs/reliability.md records.
"""
