"""The framework tests run in the frameworks venv (`make test-frameworks`); elsewhere torch is absent and
they are not collected at all, rather than reported as skipped."""

import importlib.util

collect_ignore_glob = [] if importlib.util.find_spec("torch") is not None else ["test_*.py"]
