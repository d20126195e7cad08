"""The ``modcascade`` command line. Thin: each command parses options and calls the library.

Errors the library raises on purpose (:class:`ModcascadeError`) are printed as one line naming the
problem and the fix, with exit code 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from pipeline.errors import ModcascadeError

app = typer.Typer(
    name="modcascade",
    help="Streaming moderation cascade: small model first, frontier model for the borderline.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
policy_app = typer.Typer(help="Policy files: validate them.", no_args_is_help=True)
app.add_typer(policy_app, name="policy")

console = Console()
err_console = Console(stderr=True)


@policy_app.command("check")
def policy_check(
    paths: Annotated[list[Path], typer.Argument(help="policy files or directories of *.yaml files")],
) -> None:
    """Validate policy files: one line per problem (file:line: field: what is wrong and the fix)."""
    from pipeline.policy import run_check

    raise typer.Exit(run_check(paths, sys.stdout))


@app.command()
def schemas(
    check: Annotated[bool, typer.Option("--check", help="only check that the committed files are current")] = False,
) -> None:
    """Write the records' JSON Schemas to pipeline/schemas/ (or check they are current)."""
    from pipeline import schema_export

    if check:
        stale = schema_export.stale_files()
        for name in stale:
            err_console.print(f"stale: {schema_export.SCHEMA_DIR / name} (run `modcascade schemas`)")
        raise typer.Exit(1 if stale else 0)
    for path in schema_export.write():
        console.print(f"wrote {path}")


@app.command()
def settings() -> None:
    """Print the effective settings (environment + defaults), secrets masked."""
    from pipeline import codec
    from pipeline.settings import load_settings

    console.print_json(codec.dumps(load_settings().redacted()).decode())


@app.command()
def broker(
    probe: Annotated[bool, typer.Option("--probe", help="report which Kafka features the broker supports")] = False,
) -> None:
    """Start the embedded Kafka-compatible broker on loopback and create the topics; Ctrl-C stops it.

    With KAFKA_BOOTSTRAP / MODCASCADE_KAFKA_BOOTSTRAP set, no broker is started: the topics are created
    (and --probe runs) on that Kafka instead.
    """
    from pipeline.runtime import serve_broker

    asyncio.run(serve_broker(console, probe=probe))


@app.command()
def produce(
    file: Annotated[Path, typer.Argument(help="JSONL file, one post per line", exists=True, dir_okay=False)],
    topic: Annotated[str | None, typer.Option(help="topic (default: the posts topic)")] = None,
) -> None:
    """Publish a JSONL file of posts. Lines are sent byte-for-byte: bad ones reach the dead-letter topic."""
    from pipeline.runtime import produce_file

    count = asyncio.run(produce_file(file, topic))
    console.print(f"published {count} records from {file}")


@app.command()
def tail(
    topic: Annotated[str, typer.Argument(help="topic or role: posts, verdicts, adjudication, labels, dead-letter")],
    limit: Annotated[int | None, typer.Option(help="stop after this many records")] = None,
    follow: Annotated[bool, typer.Option(help="keep waiting for new records")] = False,
) -> None:
    """Print the records of a topic from the beginning, one JSON object per line."""
    from pipeline.runtime import tail_topic

    asyncio.run(tail_topic(topic, limit=limit, follow=follow, out=sys.stdout))


@app.command()
def run() -> None:
    """The main job on the embedded default: broker, topics, sample posts through the pipeline, a summary."""
    from pipeline.runtime import run_main_job

    asyncio.run(run_main_job(console))


def _configure_logging() -> None:
    from rich.logging import RichHandler

    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s",
                        handlers=[RichHandler(console=err_console, show_path=False, show_time=False)])
    # aiokafka warns on every rebalance and failed optional request; for a person at a terminal that is noise.
    logging.getLogger("aiokafka").setLevel(logging.ERROR)


def main() -> None:
    _configure_logging()
    try:
        app()
    except ModcascadeError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False)
        sys.exit(2)
    except (KeyboardInterrupt, asyncio.CancelledError):  # Ctrl-C, or SIGTERM via runtime.stop_on_sigterm
        sys.exit(130)


if __name__ == "__main__":
    main()
