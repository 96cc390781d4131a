# syntax=docker/dockerfile:1
# One image for the three services (consent, dsar, notifier) and privacyctl. The Kubernetes
# Deployments pick the service by command: python -m services.<name> worker -l warning.
#
#   docker build -t privacy-services:dev .
#   docker run --rm -e PRIVACY_MASTER_KEY=... privacy-services:dev python -m services.consent worker -l warning
#
# Stage 1 builds a virtual environment with the project and its pinned dependencies; stage 2 copies
# only that environment into a slim runtime image that runs as an unprivileged user and works with a
# read-only root filesystem (writable: /tmp, where STATE_DIR points).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
RUN python -m venv /opt/venv
COPY pyproject.toml ./
COPY schemas/ schemas/
COPY privacy_runtime/ privacy_runtime/
COPY services/ services/
COPY devstack/ devstack/
COPY privacyctl/ privacyctl/
RUN /opt/venv/bin/pip install --no-compile . \
    && /opt/venv/bin/python -m compileall -q /opt/venv/lib

FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="privacy-services" \
      org.opencontainers.image.description="Consent ledger, data-subject requests and notices for ISOPARTNER AB" \
      org.opencontainers.image.vendor="ISOPARTNER AB"
RUN groupadd --system --gid 10001 privacy \
    && useradd --system --uid 10001 --gid privacy --home-dir /tmp --no-create-home \
       --shell /usr/sbin/nologin privacy
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    STATE_DIR=/tmp/state \
    WEB_BIND=0.0.0.0
WORKDIR /tmp
USER 10001:10001
EXPOSE 6066 6067 6068
CMD ["python", "-m", "services.consent", "worker", "-l", "warning"]
