# syntax=docker/dockerfile:1
#
# SPIRA continuous training: the image the `gpu` deployments of prefect.yaml run
# on a Docker work pool (one container per flow run).
#
#   docker build -t registry.example.org/spira-ct:0.1.0 .
#   docker run --rm --gpus all registry.example.org/spira-ct:0.1.0 \
#       python -c "import torch; print(torch.cuda.is_available())"
#
# GPU: the pinned torch 2.14.1 wheel from PyPI is a CUDA 13.0 build that ships
# its own CUDA libraries (cuBLAS, cuDNN, NCCL, ...), so the CUDA *base* flavour
# is enough: it adds the CUDA runtime and the labels/env the NVIDIA container
# toolkit uses to mount the host driver and to refuse, with a clear message, a
# driver too old for CUDA 13.0 (R580+). The "runtime" flavour would only
# duplicate libraries the wheel already brings (~2 GB).
# Training picks the GPU itself (training.device=auto, mixed precision on CUDA).
#
# Nothing secret or site-specific is baked in: no credentials, no
# PREFECT_API_URL (the worker injects it), no bucket names.

FROM ghcr.io/astral-sh/uv:0.8.22 AS uv

FROM nvidia/cuda:13.0.1-base-ubuntu24.04

ARG DEBIAN_FRONTEND=noninteractive
# Ubuntu 24.04 ships Python 3.12 only; uv installs a standalone CPython 3.11
# (the version the project is developed and tested with).
ARG PYTHON_VERSION=3.11

LABEL org.opencontainers.image.title="spira-ct" \
      org.opencontainers.image.description="SPIRA continuous training (Prefect flows + SpiraConv on CUDA)"

# tini reaps zombies and forwards SIGTERM, so a cancelled flow run stops cleanly.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates tini \
    && rm -rf /var/lib/apt/lists/*

COPY --from=uv /uv /usr/local/bin/uv

ENV UV_PYTHON_INSTALL_DIR=/opt/python \
    UV_PYTHON_PREFERENCE=only-managed \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_NO_CACHE=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

RUN uv python install ${PYTHON_VERSION} \
    && uv venv --python ${PYTHON_VERSION} /opt/venv

WORKDIR /opt/spira

# Dependencies first, from pyproject.toml alone: this heavy layer (torch) is
# rebuilt only when the pins change, not on every code edit.
COPY pyproject.toml ./
RUN uv pip install -r pyproject.toml --extra orchestration

# The flow code; prefect.yaml's pull step runs the flows from this folder.
COPY spira_lib/ spira_lib/
COPY spira_cli/ spira_cli/
COPY tasks/ tasks/
COPY flows/ flows/
COPY deployments/ deployments/
COPY configs/ configs/
# Editable: one copy of the code (this folder) for both `import spira_lib` and the flow entrypoints.
RUN uv pip install --no-deps -e .

RUN groupadd --system --gid 10001 spira \
    && useradd --system --uid 10001 --gid spira --create-home --home-dir /home/spira --shell /usr/sbin/nologin spira \
    && mkdir -p /home/spira/.prefect/storage \
    && chown -R spira:spira /home/spira

ENV HOME=/home/spira \
    PREFECT_HOME=/home/spira/.prefect \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1

USER spira

ENTRYPOINT ["/usr/bin/tini", "--"]
# The Docker worker replaces this with the flow-run command.
CMD ["prefect", "version"]
