"""The direction of dependencies (docs/architecture.md): every module imports only its own layer or lower ones.

    6  entry points   pipeline.cli, workers
    5  app shell      main job, runtime, summary, the commands behind the CLI, batch command, bench, review console
    4  services       the stream services and the components they are built from (settings → parts)
    3  stages         classify, adjudicate, feedback and batch stages; the Kafka stream loop that runs them
    2  domain         backends, adjudicators, policy, dataset, evaluation, training, promotion, Kafka clients
    1  foundation     stage protocol, intake, records, codec, settings, errors, metrics, retry

A new module must be given a layer here (the test says so); a wrong import fails with the chain that breaks it.
"""

from __future__ import annotations

from functools import cache

import grimp
import pytest

pytestmark = pytest.mark.unit

# Longest prefix wins: "pipeline.batch.command" is app shell although "pipeline.batch" is a stage package.
LAYERS: dict[str, int] = {
    "pipeline.cli": 6,
    "workers": 6,
    "pipeline.app": 5,
    "pipeline.bench": 5,
    "pipeline.batch.command": 5,
    "pipeline.backtest": 2,
    "pipeline.backtest.history": 3,
    "pipeline.backtest.replay": 3,
    "pipeline.backtest.stages": 5,
    "pipeline.backtest.command": 5,
    "pipeline.backtest.loop": 5,
    "pipeline.dataset.command": 5,
    "pipeline.evaluation.command": 5,
    "pipeline.promotion.command": 5,
    "pipeline.promotion.retrain": 5,
    "pipeline.training.command": 5,
    "pipeline.schema_export": 5,
    "pipeline.settings_reference": 5,
    "pipeline.review": 5,
    "pipeline.review.rules": 2,
    "pipeline.review.decision": 2,
    "pipeline.review.stats": 2,
    "pipeline.review.auth": 2,
    "pipeline.services": 4,
    "pipeline.components": 4,
    "pipeline.monitor.app": 4,
    "pipeline.cascade.stage": 3,
    "pipeline.adjudication.stage": 3,
    "pipeline.dataset.feedback": 3,
    "pipeline.batch": 3,
    "pipeline.kafka.stream": 3,
    "pipeline.backends": 2,
    "pipeline.adjudication": 2,
    "pipeline.policy": 2,
    "pipeline.cascade": 2,
    "pipeline.dataset": 2,
    "pipeline.evaluation": 2,
    "pipeline.training": 2,
    "pipeline.promotion": 2,
    "pipeline.monitor": 2,
    "pipeline.kafka": 2,
    "pipeline.serving": 2,
    "pipeline.process": 2,
    "pipeline.data": 2,
    "pipeline.stage": 1,
    "pipeline.intake": 1,
    "pipeline.records": 1,
    "pipeline.codec": 1,
    "pipeline.settings": 1,
    "pipeline.errors": 1,
    "pipeline.metrics": 1,
    "pipeline.retry": 1,
    "pipeline.torch_batch": 2,
}
PACKAGES_ONLY = {"pipeline", "workers"}  # the bare package __init__ modules, which import nothing of ours

# Stages are transport-neutral: reading a file in batch mode must never load a Kafka client.
TRANSPORT_NEUTRAL = ["pipeline.stage", "pipeline.cascade.stage", "pipeline.adjudication.stage",
                     "pipeline.dataset.feedback", "pipeline.batch.runner"]
KAFKA = ["pipeline.kafka", "aiokafka"]


@cache
def graph() -> grimp.ImportGraph:
    return grimp.build_graph("pipeline", "workers", include_external_packages=True)


def ours() -> list[str]:
    return sorted(m for m in graph().modules if m.split(".")[0] in PACKAGES_ONLY)


def layer(module: str) -> int | None:
    for prefix in sorted(LAYERS, key=len, reverse=True):
        if module == prefix or module.startswith(prefix + "."):
            return LAYERS[prefix]
    return None


def test_every_module_has_a_layer() -> None:
    unplaced = [m for m in ours() if m not in PACKAGES_ONLY and layer(m) is None
                and not any(p.startswith(m + ".") for p in LAYERS)]
    assert not unplaced, f"give these modules a layer in {__name__}.LAYERS: {unplaced}"


def test_dependencies_point_down() -> None:
    upward = []
    for importer in ours():
        low = layer(importer)
        if low is None:
            continue
        for imported in graph().find_modules_directly_imported_by(importer):
            high = layer(imported)
            if high is not None and high > low:
                upward.append(f"{importer} (layer {low}) imports {imported} (layer {high})")
    assert not upward, "imports against the direction of dependencies:\n" + "\n".join(sorted(upward))


def test_the_library_never_imports_its_entry_points() -> None:
    for module in ours():
        if module.startswith("pipeline"):
            assert not graph().find_shortest_chain(importer=module, imported="workers"), module


@pytest.mark.parametrize("stage", TRANSPORT_NEUTRAL)
@pytest.mark.parametrize("kafka", KAFKA)
def test_stages_load_no_kafka_code(stage: str, kafka: str) -> None:
    chain = graph().find_shortest_chain(importer=stage, imported=kafka, as_packages=True)
    assert chain is None, f"{stage} reaches {kafka} through " + " -> ".join(chain or ())


def test_the_layer_table_names_real_modules() -> None:
    """A stale entry (a module moved away) would silently stop checking anything."""
    known = set(ours())
    stale = [p for p in LAYERS if p not in known and not any(m.startswith(p + ".") for m in known)
             and p not in {"pipeline.process", "pipeline.settings_reference"}]
    assert not stale, f"LAYERS names modules that do not exist: {stale}"
