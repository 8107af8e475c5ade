"""Read and check the registry and batch files, reporting every problem at once.

Each problem names the file, the service or job, and the field, e.g.::

    project_registry.yaml: service 's3_sales': source.bucket: Field required
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from module_system.config.interpolate import MissingVariable, interpolate
from module_system.config.models import BatchFile, LandingConfig, Registry, ServiceConfig
from module_system.config.reading import parse_json, parse_yaml, read_text
from module_system.errors import ConfigError
from module_system.plugins import SOURCE_TYPES, VALIDATORS

# Service ids name log files and landing folders: keep them path-safe.
SERVICE_ID = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,199}")


def load_registry(path: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> Registry:
    """Parse ``project_registry.yaml`` into a :class:`Registry`, or raise :class:`ConfigError`."""
    path = Path(path)
    env = os.environ if env is None else env
    raw = _read_yaml(path)
    problems: list[str] = []
    landing = _load_landing(path, raw.get("landing"), env, problems)
    services = _load_services(path, raw.get("services"), env, problems)
    for key in sorted(str(key) for key in set(raw) - {"landing", "services"}):
        problems.append(
            f"{path}: unknown top-level key '{key}' (expected 'landing' and 'services')"
        )
    if problems or landing is None:
        raise ConfigError(problems)
    return Registry(landing=landing, services=services, base_dir=path.parent.resolve())


def load_batch(path: str | os.PathLike[str], registry: Registry | None = None) -> BatchFile:
    """Parse a batch file; with ``registry``, also check every ``service_id`` exists."""
    path = Path(path)
    raw = parse_json(path, read_text(path, "batch file"))
    try:
        batch = BatchFile.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_batch_problems(path, raw, exc)) from None
    problems = _check_jobs(path, batch, registry)
    if problems:
        raise ConfigError(problems)
    return batch


def _read_yaml(path: Path) -> dict[Any, Any]:
    raw = parse_yaml(path, read_text(path, "registry file"))
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping with 'landing' and 'services'")
    return raw


def _load_landing(
    path: Path, raw: Any, env: Mapping[str, str], problems: list[str]
) -> LandingConfig | None:
    if raw is None:
        problems.append(f"{path}: landing: missing (the bucket that receives files)")
        return None
    try:
        return LandingConfig.model_validate(interpolate(raw, env, "landing"))
    except MissingVariable as exc:
        problems.append(f"{path}: {exc.where}: environment variable ${{{exc.name}}} is not set")
    except ValidationError as exc:
        problems.extend(_format_errors(f"{path}: landing", exc))
    return None


def _load_services(
    path: Path, raw: Any, env: Mapping[str, str], problems: list[str]
) -> dict[str, ServiceConfig]:
    if not isinstance(raw, dict) or not raw:
        problems.append(f"{path}: services: expected a mapping of service ids to services")
        return {}
    services = {}
    for service_id, body in raw.items():
        where = f"{path}: service '{service_id}'"
        if not SERVICE_ID.fullmatch(str(service_id)):
            problems.append(f"{where}: the id may use letters, digits, '_', '-' and '.' only")
            continue
        try:
            services[str(service_id)] = _load_service(path.parent, body, env)
        except MissingVariable as exc:
            problems.append(
                f"{where}: {exc.where}: environment variable ${{{exc.name}}} is not set"
            )
        except ValidationError as exc:
            problems.extend(_format_errors(where, exc))
        except _FieldProblem as exc:
            problems.append(f"{where}: {exc}")
        except ConfigError as exc:  # e.g. the source type's library is not installed
            problems.extend(f"{where}: {problem}" for problem in exc.problems)
        except Exception as exc:  # a plugin's checks failed in a way it did not foresee
            problems.append(f"{where}: could not be checked: {type(exc).__name__}: {exc}")
    return services


class _FieldProblem(Exception):
    """A problem in one field that pydantic did not raise."""


def _load_service(base_dir: Path, body: Any, env: Mapping[str, str]) -> ServiceConfig:
    if not isinstance(body, dict):
        raise _FieldProblem("expected a mapping with 'type' and 'source'")
    body = interpolate(body, env)
    service = ServiceConfig.model_validate(body)
    source_cls = SOURCE_TYPES.get(service.type)
    if source_cls is None:
        known = ", ".join(SOURCE_TYPES.names())
        raise _FieldProblem(f"type: unknown source type '{service.type}' (known: {known})")
    source = _validate_part("source", source_cls.config_model, service.source)
    validation = {
        name: _validator_options(name, options, base_dir)
        for name, options in service.validation.items()
    }
    validation = source_cls.adapt_validation(source, validation)
    return service.model_copy(update={"source": source, "validation": validation})


def _validate_part(field: str, model: type[BaseModel], raw: Any) -> BaseModel:
    if raw is None:
        raise _FieldProblem(f"{field}: missing")
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise _FieldProblem("; ".join(_format_errors(field, exc, sep="."))) from None


def _validator_options(name: str, raw: Any, base_dir: Path) -> Any:
    validator_cls = VALIDATORS.get(name)
    if validator_cls is None:
        known = ", ".join(VALIDATORS.names())
        raise _FieldProblem(f"validation.{name}: unknown validator (known: {known})")
    try:
        return validator_cls.parse_options(raw, base_dir)
    except ValidationError as exc:
        raise _FieldProblem("; ".join(_format_errors(f"validation.{name}", exc, sep="."))) from None
    except (ValueError, OSError) as exc:
        raise _FieldProblem(f"validation.{name}: {exc}") from None


def _format_errors(prefix: str, exc: ValidationError, sep: str = ": ") -> list[str]:
    lines = []
    for error in exc.errors(include_url=False, include_input=False):
        loc = ".".join(str(part) for part in error["loc"])
        lines.append(f"{prefix}{sep}{loc}: {error['msg']}" if loc else f"{prefix}: {error['msg']}")
    return lines


def _batch_problems(path: Path, raw: Any, exc: ValidationError) -> list[str]:
    problems = []
    for error in exc.errors(include_url=False, include_input=False):
        loc = list(error["loc"])
        where = f"{path}"
        if len(loc) >= 2 and loc[0] == "jobs" and isinstance(loc[1], int):
            job = raw["jobs"][loc[1]] if isinstance(raw, dict) else None
            job_id = job.get("job_id") if isinstance(job, dict) else None
            where += f": job #{loc[1] + 1}" + (f" '{job_id}'" if job_id else "")
            loc = loc[2:]
        field = ".".join(str(p) for p in loc)
        problems.append(
            f"{where}: {field}: {error['msg']}" if field else f"{where}: {error['msg']}"
        )
    return problems


def _check_jobs(path: Path, batch: BatchFile, registry: Registry | None) -> list[str]:
    problems, seen = [], set()
    if not batch.jobs:
        problems.append(f"{path}: jobs: the batch has no jobs")
    for job in batch.jobs:
        if job.job_id in seen:
            problems.append(f"{path}: job '{job.job_id}': job_id: duplicate job_id")
        seen.add(job.job_id)
        if registry is not None and job.service_id not in registry.services:
            problems.append(
                f"{path}: job '{job.job_id}': service_id: unknown service '{job.service_id}'"
                f" (registry has: {', '.join(sorted(registry.services))})"
            )
    return problems
