"""`python -m crossbn`: the command line."""

from crossbn.app.cli import main

raise SystemExit(main())
