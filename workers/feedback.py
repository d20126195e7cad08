"""Entry point of the feedback worker (labels → the retraining dataset).

``python -m workers.feedback [OPTIONS]`` is ``modcascade worker feedback [OPTIONS]``: the service itself is
:mod:`pipeline.services.feedback`, the process shell (signals, metrics endpoint, ``--check``) is
:func:`pipeline.app.runtime.run_worker`. Nothing in ``pipeline/`` imports this package.
"""

from __future__ import annotations

import sys

from pipeline.cli import main as cli_main


def main() -> None:
    cli_main(["worker", "feedback", *sys.argv[1:]])


if __name__ == "__main__":
    main()
