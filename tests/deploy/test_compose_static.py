"""What can be checked of the compose file and the images without a Docker engine."""

from __future__ import annotations

import configparser
import importlib
import re

import pytest
import tomllib
import yaml
from deployfiles import (
    API_DOCKERFILE,
    COMPOSE_FILE,
    ENV_EXAMPLE,
    MULTI_HOST_FILE,
    REPO,
    WORKER_DOCKERFILE,
    compose_variables,
    env_example_names,
    pyproject_pins,
    read_dockerfile,
    settings_env_names,
)

PROJECT_SERVICES = ("migrate", "api", "worker", "cpu-worker")
WORKERS = ("worker", "cpu-worker")
WAIT_CONDITIONS = {"service_healthy", "service_completed_successfully"}
# Variables of the containers' environment that are not service settings.
RUNTIME_VARIABLES = {
    # uvicorn: trusted proxies, process count.
    "FORWARDED_ALLOW_IPS",
    "WEB_CONCURRENCY",
    # CUDA / NVIDIA Container Toolkit, and docker/gpu_slot.py.
    "CUDA_VISIBLE_DEVICES",
    "NVIDIA_VISIBLE_DEVICES",
    "NVIDIA_DRIVER_CAPABILITIES",
    "GPU_LOCK_DIR",
    "GPU_WAIT_S",
    # Python and the image's own PATH.
    "PATH",
    "PYTHONUNBUFFERED",
    "PYTHONDONTWRITEBYTECODE",
    "PIP_DISABLE_PIP_VERSION_CHECK",
    "PIP_ROOT_USER_ACTION",
}
SECRET_WORDS = ("PASSWORD", "SECRET", "AUTH", "TOKEN")


def seconds(duration: str | int) -> float:
    """A compose duration ("1m30s", "90s", "2m") in seconds."""
    if isinstance(duration, int):
        return float(duration)
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", duration)
    assert parts, f"not a duration: {duration!r}"
    return sum(float(value) * units[unit] for value, unit in parts)


def depends_on(service: dict) -> dict[str, dict]:
    value = service.get("depends_on", {})
    assert isinstance(value, dict), "depends_on must use the long form with a condition"
    return value


def environment(service: dict) -> dict[str, str]:
    value = service.get("environment", {})
    if isinstance(value, list):
        return dict(item.partition("=")[::2] for item in value)
    return value


def test_every_part_of_the_stack_is_a_service(services):
    expected = {"postgres", "redis", "migrate", "api", "worker", "cpu-worker", "flower"}
    assert expected <= set(services)


def test_every_service_has_a_healthcheck_or_runs_once(services):
    one_shot = {
        name
        for other in services.values()
        for name, rule in depends_on(other).items()
        if rule["condition"] == "service_completed_successfully"
    }
    for name, service in services.items():
        if name in one_shot:
            # A one-shot step must not be restarted: it would never "complete".
            assert service.get("restart", "no") == "no", name
            # Nor checked as a server: it runs the api image, whose healthcheck it fails.
            assert service.get("healthcheck") == {"disable": True}, name
        else:
            test = service.get("healthcheck", {}).get("test")
            assert test and test != ["NONE"], f"{name} has no healthcheck"


def test_dependencies_wait_for_health_or_completion(services):
    for name, service in services.items():
        for dependency, rule in depends_on(service).items():
            assert dependency in services, f"{name} depends on unknown {dependency}"
            assert rule.get("condition") in WAIT_CONDITIONS, f"{name} -> {dependency}"
            if rule["condition"] == "service_healthy":
                assert "healthcheck" in services[dependency], f"{dependency} has no healthcheck"


def test_migrate_runs_once_before_the_api_and_workers(services):
    assert services["migrate"]["command"] == ["alembic", "upgrade", "head"]
    assert depends_on(services["migrate"])["postgres"]["condition"] == "service_healthy"
    for name in PROJECT_SERVICES[1:]:
        rules = depends_on(services[name])
        assert rules["migrate"]["condition"] == "service_completed_successfully", name
        assert rules["postgres"]["condition"] == "service_healthy", name
        assert rules["redis"]["condition"] == "service_healthy", name


def test_postgres_and_redis_check_themselves_and_persist(services, compose):
    postgres, redis = services["postgres"], services["redis"]
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])
    assert "redis-cli ping" in " ".join(redis["healthcheck"]["test"])
    command = redis["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert "pgdata:/var/lib/postgresql/data" in postgres["volumes"]
    assert "redisdata:/data" in redis["volumes"]


def test_volumes_are_named_and_shared_by_the_api_and_workers(services, compose):
    named = set(compose["volumes"])
    for name, service in services.items():
        for mount in service.get("volumes", []):
            source = mount.split(":")[0] if isinstance(mount, str) else mount["source"]
            assert source in named, f"{name} mounts {source!r}, not a named volume"
    api_mounts = set(services["api"]["volumes"])
    for worker in WORKERS:
        env = environment(services[worker])
        for variable, volume in (("ARTIFACT_DIR", "artifacts"), ("DATASET_DIR", "datasets")):
            mount = f"{volume}:{env[variable]}"
            assert mount in services[worker]["volumes"] and mount in api_mounts, (worker, mount)
    # The GPU locks are per machine and only for workers.
    assert not any(m.startswith("gpu-locks:") for m in api_mounts)


def test_the_gpu_worker_reserves_gpus_and_the_cpu_worker_none(services):
    devices = services["worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert len(devices) == 1
    device = devices[0]
    assert device["driver"] == "nvidia"
    assert "gpu" in device["capabilities"]
    assert device.get("count") == "all" or isinstance(device.get("count"), int)
    assert "deploy" not in services["cpu-worker"]
    assert services["cpu-worker"]["environment"]["WORKER_DEVICE"] == "cpu"


def test_workers_run_one_job_at_a_time(services, worker_dockerfile):
    source = (REPO / "worker" / "main.py").read_text()
    for flag in ("--concurrency=1", "--prefetch-multiplier=1", "--pool=solo"):
        assert flag in source, f"worker.main no longer passes {flag}"
    for name in WORKERS:
        assert services[name]["command"][:3] == ["python", "-m", "worker.main"], name
    assert worker_dockerfile.exec_form("CMD", "worker")[:3] == ["python", "-m", "worker.main"]


def test_stopping_leaves_time_to_checkpoint_and_drain(services, api_dockerfile):
    for name in WORKERS:
        grace = services[name]["stop_grace_period"]
        default = re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", grace)
        assert seconds(default) >= 60, name
        assert services[name].get("stop_signal", "SIGTERM") == "SIGTERM"
        # tini forwards SIGTERM to the worker and reaps its children.
        assert services[name]["init"] is True
    command = api_dockerfile.exec_form("CMD", "api")
    drain = float(command[command.index("--timeout-graceful-shutdown") + 1])
    assert seconds(services["api"]["stop_grace_period"]) > drain


def test_optional_services_sit_behind_profiles(services):
    assert services["flower"]["profiles"] == ["monitoring"]
    assert services["cpu-worker"]["profiles"] == ["cpu"]
    for name in ("postgres", "redis", "migrate", "api", "worker"):
        assert "profiles" not in services[name], name


def test_the_worker_image_installs_the_torch_pins_of_pyproject(worker_dockerfile):
    pins = pyproject_pins()
    assert "torch" in pins and "torchvision" in pins, "pyproject.toml must pin torch/torchvision"
    for arg, package in (("TORCH_VERSION", "torch"), ("TORCHVISION_VERSION", "torchvision")):
        defaults = worker_dockerfile.arg_defaults(arg)
        assert defaults and set(defaults) == {pins[package]}, arg
    installs = [i.arguments for i in worker_dockerfile.all("RUN") if "pip install" in i.arguments]
    torch_installs = [r for r in installs if '"torch==${TORCH_VERSION}"' in r]
    assert torch_installs, "worker.Dockerfile does not install the pinned torch"
    for run in torch_installs:
        assert '"torchvision==${TORCHVISION_VERSION}"' in run
    # The rest comes from pyproject.toml: the main dependencies and the engine extra.
    requirements = [r for r in installs if "-r /tmp/requirements.txt" in r]
    assert any(
        "pyproject.toml" in r and "['dependencies']" in r and "['engine']" in r
        for r in requirements
    )


def test_the_api_image_installs_no_torch(api_dockerfile):
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    names = {re.match(r"[A-Za-z0-9_.\-]+", r).group(0).lower() for r in project["dependencies"]}
    # torch is the engine's, an extra; the API installs only the main dependencies.
    assert not names & {"torch", "torchvision"}, "torch is back in the main dependencies"
    engine = " ".join(project["optional-dependencies"]["engine"])
    assert "torch==" in engine and "torchvision==" in engine
    assert not api_dockerfile.arg_defaults("TORCH_VERSION")
    installs = [i.arguments for i in api_dockerfile.all("RUN") if "pip install" in i.arguments]
    assert not any("torch" in r and "find_spec" not in r for r in installs)
    assert any("-r /tmp/requirements.txt" in r and "['dependencies']" in r for r in installs)
    assert not any("optional-dependencies" in r for r in installs)
    # ...and the build fails if a dependency pulled torch in anyway.
    assert any("find_spec('torch')" in r for r in installs)


def test_gpu_and_cpu_workers_get_the_right_torch_build(worker_dockerfile, services):
    gpu = " ".join(i.arguments for i in worker_dockerfile.in_stage("torch-gpu"))
    cpu = " ".join(i.arguments for i in worker_dockerfile.in_stage("torch-cpu"))
    # PyPI's default Linux x86_64 torch wheel is the CUDA build; the CPU one has its own index.
    assert "--index-url" not in gpu and "--extra-index-url" not in gpu
    assert '--index-url "${TORCH_CPU_INDEX_URL}"' in cpu
    assert worker_dockerfile.arg_defaults("TORCH_FLAVOR") == ["gpu"]
    assert any(
        i.arguments.startswith("torch-${TORCH_FLAVOR} ") for i in worker_dockerfile.all("FROM")
    )
    assert services["worker"]["build"]["args"]["TORCH_FLAVOR"] == "gpu"
    assert services["cpu-worker"]["build"]["args"]["TORCH_FLAVOR"] == "cpu"


def test_images_are_multi_stage_slim_and_run_as_one_non_root_user(
    api_dockerfile, worker_dockerfile
):
    uids = set()
    for dockerfile, final in ((api_dockerfile, "api"), (worker_dockerfile, "worker")):
        assert dockerfile.stages()[-1] == final
        assert dockerfile.arg_defaults("PYTHON_IMAGE") == ["python:3.11-slim-bookworm"]
        final_stage = dockerfile.in_stage(final)
        assert any(i.keyword == "COPY" and "--from=build" in i.arguments for i in final_stage)
        users = [i.arguments for i in final_stage if i.keyword == "USER"]
        assert users and users[-1] not in ("root", "0"), dockerfile.path.name
        uids.update(dockerfile.arg_defaults("APP_UID"))
    # Both write the same volumes: one owner.
    assert len(uids) == 1 and uids != {"0"}


def test_the_api_image_checks_health_with_python_and_serves_behind_a_proxy(api_dockerfile):
    health = [i.arguments for i in api_dockerfile.in_stage("api") if i.keyword == "HEALTHCHECK"]
    assert health and '"python"' in health[-1] and "/healthz" in health[-1]
    command = api_dockerfile.exec_form("CMD", "api")
    assert command[0] == "uvicorn" and "--factory" in command and "--proxy-headers" in command
    module, _, attribute = command[1].partition(":")
    assert callable(getattr(importlib.import_module(module), attribute))


def test_the_compose_commands_exist(services):
    """The healthcheck and entrypoint scripts that the worker image copies are in the repo."""
    worker = read_dockerfile(WORKER_DOCKERFILE)
    copies = [i.arguments for i in worker.all("COPY") if "docker/" in i.arguments]
    for script in re.findall(r"(docker/\S+\.py)", " ".join(copies)):
        assert (REPO / script).is_file(), script
    assert services["worker"]["healthcheck"]["test"][-1] == "/usr/local/bin/worker_health.py"


def test_migrations_ship_in_the_api_image(api_dockerfile):
    config = configparser.ConfigParser(interpolation=None)
    config.read(REPO / "alembic.ini")
    location = config["alembic"]["script_location"].replace("%(here)s/", "")
    assert (REPO / location / "env.py").is_file()
    copies = [i.arguments for i in api_dockerfile.in_stage("api") if i.keyword == "COPY"]
    assert any(c.endswith("alembic.ini ./") for c in copies)
    assert any(c.endswith(f"{location} ./{location}") for c in copies)


def test_container_variables_are_service_settings(services, api_dockerfile, worker_dockerfile):
    known = {name for names in settings_env_names().values() for name in names}
    for name in PROJECT_SERVICES:
        unknown = set(environment(services[name])) - known - RUNTIME_VARIABLES
        assert not unknown, f"{name} sets variables no setting reads: {sorted(unknown)}"
    for dockerfile, stage in ((api_dockerfile, "api"), (worker_dockerfile, "worker")):
        unknown = set(dockerfile.env(stage)) - known - RUNTIME_VARIABLES
        assert not unknown, f"{dockerfile.path.name} sets unknown variables: {sorted(unknown)}"


def test_env_example_documents_every_setting():
    documented = env_example_names()
    missing = [names[0] for names in settings_env_names().values() if names[0] not in documented]
    assert not missing, f".env.example does not document {missing}"


def test_env_example_documents_every_compose_variable():
    documented = env_example_names()
    for path in (COMPOSE_FILE, MULTI_HOST_FILE):
        used = compose_variables(path.read_text())
        missing = sorted(set(used) - set(documented))
        assert not missing, f"{path.name} uses undocumented {missing}"


def test_no_secret_has_a_usable_default():
    for path in (COMPOSE_FILE, MULTI_HOST_FILE):
        for name in compose_variables(path.read_text()):
            if any(word in name for word in SECRET_WORDS):
                # Required (:?) or empty by default (then the service refuses to start).
                for match in re.finditer(
                    rf"(?<!\$)\$\{{{name}(:?[-?+])?([^}}]*)\}}", path.read_text()
                ):
                    operator, value = match.groups()
                    assert operator == ":?" or (operator == ":-" and value == ""), (name, value)
    documented = env_example_names()
    for name, value in documented.items():
        if any(word in name for word in SECRET_WORDS) and not name.startswith("FLOWER_"):
            assert value == "", f".env.example gives {name} a value"
    assert documented["POSTGRES_PASSWORD"] == "" and documented["REDIS_PASSWORD"] == ""


def test_required_variables_stop_compose_with_a_message():
    text = COMPOSE_FILE.read_text()
    for name in ("POSTGRES_PASSWORD", "REDIS_PASSWORD"):
        assert compose_variables(text)[name] == {":?"}, name
        assert f"${{{name}:?set {name} in .env}}" in text


@pytest.mark.parametrize("pattern", ["*", "**/.env", "**/__pycache__"])
def test_the_build_context_leaves_out_local_files(pattern):
    lines = (REPO / ".dockerignore").read_text().splitlines()
    assert pattern in lines
    # Everything is excluded first; only sources come back, never .venv or .env.
    assert not any(line.startswith("!") and (".venv" in line or ".env" in line) for line in lines)


def test_env_example_is_not_ignored_by_git_but_env_is():
    ignored = (REPO / ".gitignore").read_text().splitlines()
    assert ".env" in ignored
    assert ENV_EXAMPLE.is_file()
    assert API_DOCKERFILE.is_file() and WORKER_DOCKERFILE.is_file()


def test_the_compose_check_changes_only_the_database_and_broker_images(services):
    """scripts/compose_check.sh runs docker-compose.yml itself; its override swaps two images."""
    override = yaml.safe_load((REPO / "docker" / "check" / "compose.check.yml").read_text())
    assert set(override) == {"services"}
    assert set(override["services"]) == {"postgres", "redis"}
    for name, service in override["services"].items():
        assert set(service) == {"image"}, name
        assert services[name]["image"] != service["image"]
    script = (REPO / "scripts" / "compose_check.sh").read_text()
    assert "-f docker-compose.yml -f compose.check.yml" in script
    assert "cp docker-compose.yml docker/check/compose.check.yml" in script


def test_the_dockerfiles_take_no_pip_settings_of_the_building_machine(
    api_dockerfile, worker_dockerfile
):
    """A build machine's own index or CA bundle is mounted by the check, never baked in."""
    for dockerfile in (api_dockerfile, worker_dockerfile):
        text = dockerfile.path.read_text()
        for word in ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_CERT", "pip.conf", "file://"):
            assert word not in text, (dockerfile.path.name, word)
        assert "--extra-index-url" not in text and "--trusted-host" not in text
