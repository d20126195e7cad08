"""Entry point of the drift monitor (verdicts, adjudication, dead letters → alerts and metrics).

``python -m workers.monitor`` is ``modcascade worker monitor``: the faust app is :mod:`pipeline.monitor.app`, the
process shell (settings, policy, metrics endpoint) is :func:`pipeline.app.runtime.run_monitor`. Nothing in
``pipeline/`` imports this package.
"""

from __future__ import annotations

import sys

from pipeline.cli import main as cli_main


def main() -> None:
    cli_main(["worker", "monitor", *sys.argv[1:]])


if __name__ == "__main__":
    main()
