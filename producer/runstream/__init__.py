"""runstream: experiment and hardware tracking on Kafka and ClickHouse.

>>> import runstream
>>> with runstream.init(project="resnet", team="vision", config={"lr": 3e-4}) as run:
...     run.log({"loss": 0.31, "acc": 0.91}, step=1)
"""

from runstream._version import __version__
from runstream.run import Run, init
from runstream.settings import Settings

__all__ = ["Run", "Settings", "__version__", "init"]
