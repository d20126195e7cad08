"""Entry point of the classify worker (posts → small model → verdicts and adjudication requests).

``python -m workers.classify [OPTIONS]`` is ``modcascade worker classify [OPTIONS]``: the service itself is
:mod:`pipeline.services.classify`, the process shell (signals, metrics endpoint, ``--check``) is
:func:`pipeline.app.runtime.run_worker`. Nothing in ``pipeline/`` imports this package.
"""

from __future__ import annotations

import sys

from pipeline.cli import main as cli_main


def main() -> None:
    cli_main(["worker", "classify", *sys.argv[1:]])


if __name__ == "__main__":
    main()
