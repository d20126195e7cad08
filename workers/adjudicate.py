"""Entry point of the adjudicate worker (adjudication requests → frontier model → verdicts and labels).

``python -m workers.adjudicate [OPTIONS]`` is ``modcascade worker adjudicate [OPTIONS]``: the service itself is
:mod:`pipeline.services.adjudicate`, the process shell (signals, metrics endpoint, ``--check``) is
:func:`pipeline.app.runtime.run_worker`. Nothing in ``pipeline/`` imports this package.
"""

from __future__ import annotations

import sys

from pipeline.cli import main as cli_main


def main() -> None:
    cli_main(["worker", "adjudicate", *sys.argv[1:]])


if __name__ == "__main__":
    main()
