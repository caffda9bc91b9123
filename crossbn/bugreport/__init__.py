"""Bug reports: one per root cause, not one per case.

group.py   findings grouped by backend, device and root cause (the
           fingerprint that explains them; the first departing stage where
           none does), each group with its smallest case (`crossbn bugs`)
"""
