# syntax=docker/dockerfile:1
# One image for every Herald process: `herald run classifier`, `herald run channel --channel email
# --lane priority`, `herald run fallback`, `herald run scheduler`, `herald migrate`, ...
# Installs the package without the `stack` / `dev` extras (no embedded Kafka, PostgreSQL or Redis).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG NODE_IMAGE=node:20-bookworm-slim

# The web components' bundle (served by `herald run api` at /web/<version>/herald.js); node stays here.
FROM ${NODE_IMAGE} AS web
WORKDIR /web
COPY consumers/api/web/package.json consumers/api/web/package-lock.json consumers/api/web/build.mjs ./
RUN npm ci --no-audit --no-fund
COPY consumers/api/web/src ./src
RUN node build.mjs

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/herald
WORKDIR /src
# Dependencies first, in their own layer: they change far less often than the code.
COPY pyproject.toml README.md ./
RUN python - <<'PY' > /tmp/requirements.txt
import tomllib
print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))
PY
RUN /opt/herald/bin/pip install -r /tmp/requirements.txt
COPY schemas ./schemas
COPY channels ./channels
COPY consumers ./consumers
COPY --from=web /web/dist ./consumers/api/web/dist
RUN /opt/herald/bin/pip install --no-deps . \
 && /opt/herald/bin/python -m compileall -q /opt/herald/lib

FROM ${PYTHON_IMAGE}
RUN groupadd --system --gid 10001 herald \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin herald
COPY --from=build /opt/herald /opt/herald
ENV PATH=/opt/herald/bin:${PATH} \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
# Numeric, so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
USER 10001:10001
WORKDIR /tmp
EXPOSE 9464 8080
ENTRYPOINT ["herald"]
CMD ["--help"]
