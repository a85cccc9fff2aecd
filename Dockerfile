# The project's code server image: the code location that the webserver and the daemon load over
# gRPC, and the image of every run pod (deploy/helm/values.yaml). Build from the repository root:
#   docker build -t catalog-assets:0.1.0 .
FROM python:3.11-slim

# No .pyc files in the image; logs reach `kubectl logs` unbuffered.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# A user without privileges: the code never needs root.
RUN groupadd --system --gid 10001 dagster \
    && useradd --system --uid 10001 --gid dagster --home-dir /opt/dagster --create-home dagster

WORKDIR /opt/dagster/app

# Dependencies come from pyproject.toml's pins (dagster 1.13.27, dagster-postgres 0.29.27 and
# `sqlalchemy<2.1`), with the `k8s` extra (dagster-k8s 0.29.27) that run pods need for the
# instance's K8sRunLauncher. The package is installed, not edited in place: the image holds no
# build tools and no tests.
COPY pyproject.toml setup.py README.md ./
COPY catalog_assets ./catalog_assets
COPY sensors ./sensors
RUN pip install --no-compile ".[k8s]"

USER dagster
# DAGSTER_HOME holds the instance's dagster.yaml; the Helm chart mounts its own there.
ENV DAGSTER_HOME=/opt/dagster/dagster_home
RUN mkdir -p "$DAGSTER_HOME"

EXPOSE 4000
# The Helm chart starts the same command with its own arguments (codeServerArgs).
CMD ["dagster", "code-server", "start", "-m", "catalog_assets.definitions", "-h", "0.0.0.0", "-p", "4000"]
