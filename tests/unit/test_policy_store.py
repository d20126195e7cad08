"""PolicyStore: a valid edit swaps the policy, an invalid one keeps the last good policy and says so."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from pipeline.errors import PolicyError
from pipeline.metrics import Metrics
from pipeline.policy import Policy, PolicyStore

DEFAULT = Path(__file__).resolve().parents[2] / "policies" / "default.yaml"
HATE_BLOCK = "    block_at: 0.80"  # the first block_at of 0.80 is hate's


@pytest.fixture
def policy_file(tmp_path: Path) -> Path:
    path = tmp_path / "policies" / "default.yaml"
    path.parent.mkdir()
    shutil.copyfile(DEFAULT, path)
    return path


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def store(policy_file: Path, registry: CollectorRegistry) -> PolicyStore:
    return PolicyStore(policy_file, Metrics.create(registry))


def save(path: Path, text: str) -> None:
    """Save the way editors do: write a new file, rename it over the old one."""
    scratch = path.with_name(f".{path.name}.swp")
    scratch.write_text(text, encoding="utf-8")
    os.replace(scratch, path)


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, old
    save(path, text.replace(old, new, 1))


def sample(registry: CollectorRegistry, metric: str, **labels: str) -> float | None:
    return registry.get_sample_value(metric, labels)


def test_the_store_starts_with_the_file_and_publishes_it(store: PolicyStore, registry: CollectorRegistry) -> None:
    assert store.current.name == "default"
    assert store.last_error is None
    assert sample(registry, "modcascade_policy_info", name="default", version=store.current.version) == 1.0
    assert sample(registry, "modcascade_policy_file_valid") == 1.0


def test_an_invalid_file_at_startup_fails_loudly(policy_file: Path) -> None:
    edit(policy_file, HATE_BLOCK, "    block_at: 0.10")
    with pytest.raises(PolicyError, match=r"categories.hate.block_at: block_at 0.1 is below allow_below 0.2"):
        PolicyStore(policy_file)


def test_a_valid_edit_swaps_the_policy(store: PolicyStore, policy_file: Path, registry: CollectorRegistry) -> None:
    old = store.current
    seen: list[Policy] = []
    store.on_change(seen.append)
    edit(policy_file, HATE_BLOCK, "    block_at: 0.85")

    assert store.reload() is True
    assert store.current.version != old.version
    assert store.current.categories["hate"].block_at == 0.85
    assert seen == [store.current]
    assert sample(registry, "modcascade_policy_reloads_total") == 1.0
    assert sample(registry, "modcascade_policy_info", name="default", version=store.current.version) == 1.0
    assert store.reload() is False  # nothing changed since


def test_a_comment_only_edit_keeps_the_version(
    store: PolicyStore, policy_file: Path, registry: CollectorRegistry
) -> None:
    old = store.current
    edit(policy_file, "# scores below this are allowed", "# allowed below this score")
    assert store.reload() is False
    assert store.current is old
    assert sample(registry, "modcascade_policy_reloads_total") == 0.0


def test_an_invalid_edit_keeps_the_last_good_policy_and_says_why(
    store: PolicyStore, policy_file: Path, registry: CollectorRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    old = store.current
    edit(policy_file, HATE_BLOCK, "    block_at: 0.10")
    edit(policy_file, "fallback: small_model", "fallbak: small_model")

    with caplog.at_level(logging.ERROR, logger="pipeline.policy.store"):
        assert store.reload() is False
    assert store.current is old
    assert store.last_error is not None
    assert [issue.field for issue in store.last_error.issues] == ["fallback", "categories.hate.block_at", "fallbak"]
    assert sample(registry, "modcascade_policy_file_valid") == 0.0
    assert sample(registry, "modcascade_policy_reload_errors_total") == 1.0
    assert sample(registry, "modcascade_policy_reloads_total") == 0.0
    assert [record.getMessage() for record in caplog.records] == [
        f"policy edit rejected, keeping version {old.version}: {issue}" for issue in store.last_error.issues
    ]

    # Fixing the file back to the policy in force clears the error without counting a reload.
    shutil.copyfile(DEFAULT, policy_file)
    assert store.reload() is False
    assert store.last_error is None
    assert sample(registry, "modcascade_policy_file_valid") == 1.0


def test_a_failing_callback_does_not_stop_the_swap(
    store: PolicyStore, policy_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(policy: Policy) -> None:
        raise RuntimeError("subscriber bug")

    seen: list[Policy] = []
    store.on_change(broken)
    store.on_change(seen.append)
    edit(policy_file, HATE_BLOCK, "    block_at: 0.85")
    assert store.reload() is True
    assert seen == [store.current]
    assert "on-change callback" in caplog.text


# -- the watch task ---------------------------------------------------------------------------------------------


@pytest.fixture
async def watching(store: PolicyStore) -> AsyncIterator[PolicyStore]:
    stop = asyncio.Event()
    task = asyncio.create_task(store.watch(stop, debounce_ms=50))
    try:
        yield store
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=5)


async def eventually(condition: Callable[[], bool], redo: Callable[[], None], timeout_s: float = 10.0) -> None:
    """Wait for ``condition``, doing the edit again every second.

    The watcher has no "ready" signal: an edit made while it is still starting can go unseen. Saving
    the same content again is what an operator would do, and shows the watcher is live.
    """
    async with asyncio.timeout(timeout_s):
        redo()
        while not condition():
            for _ in range(50):
                await asyncio.sleep(0.02)
                if condition():
                    return
            redo()


async def test_the_watch_task_picks_up_a_valid_edit(watching: PolicyStore, policy_file: Path) -> None:
    old = watching.current.version
    text = policy_file.read_text(encoding="utf-8").replace(HATE_BLOCK, "    block_at: 0.85", 1)
    await eventually(lambda: watching.current.version != old, lambda: save(policy_file, text))
    assert watching.current.categories["hate"].block_at == 0.85


async def test_the_watch_task_keeps_the_old_policy_on_an_invalid_edit(
    watching: PolicyStore, policy_file: Path, registry: CollectorRegistry
) -> None:
    old = watching.current
    good = policy_file.read_text(encoding="utf-8")
    await eventually(lambda: watching.last_error is not None,
                     lambda: save(policy_file, good.replace(HATE_BLOCK, "    block_at: 0.10", 1)))
    assert watching.current is old
    assert sample(registry, "modcascade_policy_file_valid") == 0.0

    await eventually(lambda: watching.current is not old,
                     lambda: save(policy_file, good.replace(HATE_BLOCK, "    block_at: 0.85", 1)))
    assert watching.last_error is None


async def test_the_watch_task_ignores_other_files_in_the_directory(
    watching: PolicyStore, policy_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reloads = 0
    reload = watching.reload

    def counting_reload() -> bool:
        nonlocal reloads
        reloads += 1
        return reload()

    monkeypatch.setattr(watching, "reload", counting_reload)
    old = watching.current.version
    text = policy_file.read_text(encoding="utf-8").replace(HATE_BLOCK, "    block_at: 0.85", 1)
    await eventually(lambda: watching.current.version != old, lambda: save(policy_file, text))  # watcher is live
    await asyncio.sleep(0.3)  # let the events of the last save settle

    reloads = 0
    save(policy_file.parent / "strict.yaml", "not: [valid")
    await asyncio.sleep(0.5)
    assert reloads == 0


async def test_the_watch_task_follows_a_kubernetes_configmap_swap(tmp_path: Path) -> None:
    # A ConfigMap volume holds ..<timestamp>/ directories, a ..data symlink to the current one, and the
    # file as a symlink through ..data; an update repoints ..data with a rename.
    mount = tmp_path / "mount"
    (mount / "..v1").mkdir(parents=True)
    shutil.copyfile(DEFAULT, mount / "..v1" / "default.yaml")
    (mount / "..data").symlink_to("..v1")
    (mount / "default.yaml").symlink_to("..data/default.yaml")
    store = PolicyStore(mount / "default.yaml")
    old = store.current.version
    stop = asyncio.Event()
    task = asyncio.create_task(store.watch(stop, debounce_ms=50))
    versions = iter(range(2, 1000))

    def publish() -> None:
        version = mount / f"..v{next(versions)}"
        version.mkdir()
        text = DEFAULT.read_text(encoding="utf-8").replace(HATE_BLOCK, "    block_at: 0.85", 1)
        (version / "default.yaml").write_text(text, encoding="utf-8")
        (mount / "..data_tmp").symlink_to(version.name)
        os.replace(mount / "..data_tmp", mount / "..data")

    try:
        await eventually(lambda: store.current.version != old, publish)
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=5)
