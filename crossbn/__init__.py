"""crossbn: a cross-backend BatchNorm consistency suite.

The subpackages are layers, lowest first: spec, oracle, backends, execution,
records, verdict, conventions, upgrade and bugreport, report, app (and
conformance, the pytest modules). docs/architecture.md describes them.
"""
