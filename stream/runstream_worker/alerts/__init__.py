"""The teams' alert rules in the worker: the rules in force (``rulebook``), their evaluation
(``engine``, over ``state``), around the runner's takes (``pipeline``), and webhooks (``notify``)."""
