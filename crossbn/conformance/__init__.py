"""crossbn's conformance tests, collected with `pytest --pyargs crossbn.conformance`."""
