"""The one-environment decision (docs/decisions.md, "One environment"): faust-streaming, vLLM and a click
newer than faust's pin live in one environment, and a real faust worker still moves records on it."""

from __future__ import annotations

import asyncio
import os
import sys
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

from pipeline.settings import Settings
from tests.support.kafka import ConsumerFactory, ProducerFactory, TopicFactory, read_records

REPO = Path(__file__).resolve().parents[2]


def test_click_is_newer_than_faust_pins() -> None:
    click = Version(metadata.version("click"))
    pins = [Requirement(r) for r in metadata.requires("faust-streaming") or []]
    [faust_click] = [r for r in pins if r.name == "click"]
    assert click >= Version("8.4.2"), "huggingface_hub (for vLLM) needs click>=8.4.2"
    assert not faust_click.specifier.contains(click), f"faust's pin {faust_click} is overridden on purpose"


@pytest.mark.tools
async def test_faust_vllm_and_click_import_together() -> None:
    # A subprocess: importing vLLM starts threads and registers things this test process should not keep.
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "import faust, vllm, click; print(click.__version__)",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    try:
        async with asyncio.timeout(120):
            output, _ = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0, output.decode(errors="replace")[-3000:]
    assert output.decode().strip().splitlines()[-1] == metadata.version("click")


async def test_a_faust_worker_moves_records_end_to_end(
    tmp_path: Path, kafka_settings: Settings,
    topic_factory: TopicFactory, producer_factory: ProducerFactory, consumer_factory: ConsumerFactory,
) -> None:
    source, sink = await topic_factory("faust-in"), await topic_factory("faust-out")
    producer = await producer_factory()
    sent = [(f"post-{i}".encode(), f'{{"id": "post-{i}", "text": "hello {i}"}}'.encode()) for i in range(5)]
    for key, value in sent:
        await producer.send(source, value, key=key)
    await producer.flush()

    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "MODCASCADE_KAFKA_BOOTSTRAP": kafka_settings.bootstrap,
        "MODCASCADE_TOPIC_PREFIX": "",
        "MODCASCADE_TOPIC_POSTS": source,
        "MODCASCADE_TOPIC_VERDICTS": sink,
    }
    log_path = tmp_path / "faust-worker.log"
    with open(log_path, "wb") as log:
        worker = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "faust", "-A", "tests.support.faust_app", "worker",
            "--loglevel", "warn", "--without-web",
            cwd=tmp_path,  # faust writes its data directory into the working directory
            env=env, stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=asyncio.subprocess.STDOUT,
        )
    try:
        consumer = await consumer_factory(sink)
        reading = asyncio.ensure_future(read_records(consumer, len(sent), timeout_s=60))
        exited = asyncio.ensure_future(worker.wait())
        await asyncio.wait({reading, exited}, return_when=asyncio.FIRST_COMPLETED)
        for task in (reading, exited):
            task.cancel()
        outcomes = await asyncio.gather(reading, return_exceptions=True)
        await asyncio.gather(exited, return_exceptions=True)
    finally:
        await _stop(worker)
    if isinstance(outcomes[0], BaseException):
        pytest.fail(f"the faust worker did not move the records (exit code {worker.returncode}, "
                    f"{outcomes[0]!r}); its log:\n{log_path.read_text()[-3000:]}")
    records = outcomes[0]
    assert sorted((r.key, r.value) for r in records) == sorted(sent)


async def _stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is not None:
        return
    process.terminate()
    try:
        async with asyncio.timeout(15):
            await process.wait()
    except TimeoutError:
        process.kill()
        await process.wait()
