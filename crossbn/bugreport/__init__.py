"""Bug reports: one per root cause, not one per case.

group.py   findings grouped by backend, device, verdict, first departing
           stage and fingerprint, each group with its smallest case
           (`crossbn bugs`)
"""
