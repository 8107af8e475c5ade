# syntax=docker/dockerfile:1
# Module System in a slim image: the wheel with every extra but [render], run as a non-root
# user, `module-system` as the entrypoint. This image was NOT built on the machine the
# repository is developed on (it has no Docker engine): CI lints this file with hadolint and
# tests that every file and command it names exists (tests/test_containers.py).
#
#   docker build -t module-system .                          # no JavaScript rendering
#   docker build --target render -t module-system:render .   # + Chromium for render_js: true
#   docker run --rm module-system check --registry /opt/module-system/demo/project_registry.yaml
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- build: the wheel, installed with its extras into a venv that the runtime copies -------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md LICENSE constraints.txt ./
COPY module_system ./module_system
# Versions come from constraints.txt: what CI tested.
# hadolint ignore=DL3013
RUN pip install -c constraints.txt build \
 && python -m build --wheel --outdir /dist . \
 && python -m venv /opt/venv \
 && /opt/venv/bin/pip install -c constraints.txt \
      "$(ls /dist/*.whl)[sftp,web,postgres,fast-csv,lineage,dask,dashboard,demo]"

# --- base: the runtime every target shares ------------------------------------------------
FROM ${PYTHON_IMAGE} AS base
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 \
    MODULE_SYSTEM_REGISTRY=/opt/module-system/demo/project_registry.yaml
# /data: logs, reports and temp files; a named volume mounted there starts owned by app.
RUN groupadd --gid 10001 app \
 && useradd --uid 10001 --gid 10001 --create-home app \
 && install -d -o app -g app /data
COPY --from=build /opt/venv /opt/venv
# The demo registry, batch and schemas at a short path (they also ship inside the package).
COPY module_system/demo/data/ /opt/module-system/demo/
USER 10001:10001
WORKDIR /data
EXPOSE 8765
# The dashboard (`module-system serve` or `dashboard --host 0.0.0.0`) answers its sign-in
# page without a token; other commands (batches, workers) turn this check off in compose.yaml.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import sys, urllib.request as u; sys.exit(u.urlopen('http://127.0.0.1:8765/login', timeout=4).status != 200)"]
ENTRYPOINT ["module-system"]
CMD ["--help"]

# --- render: adds Debian's Chromium and Playwright for pages that need JavaScript ---------
FROM base AS render
USER 0
# Debian's chromium follows the distribution's security updates: not pinned on purpose.
# hadolint ignore=DL3008,DL3013
RUN apt-get update \
 && apt-get install -y --no-install-recommends chromium \
 && rm -rf /var/lib/apt/lists/*
COPY constraints.txt /tmp/constraints.txt
# hadolint ignore=DL3013
RUN pip install --no-cache-dir -c /tmp/constraints.txt playwright && rm /tmp/constraints.txt
USER 10001:10001

# --- runtime (the default target): everything but rendering -------------------------------
FROM base AS runtime
