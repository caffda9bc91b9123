"""crossbn: a cross-backend BatchNorm consistency suite.

The subpackages are layers, lowest first: spec, oracle, backends, execution,
records, verdict, conventions, upgrade and bugreport, report, app (and
conformance, the pytest modules). docs/architecture.md describes them.

PYTEST_DONT_REWRITE: `crossbn run` has imported crossbn before it starts
pytest, so pytest could not rewrite its asserts and would warn that it cannot.
"""
