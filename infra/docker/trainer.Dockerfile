# The trainer: a JetStream consumer (python -m fermion.functions.trainer) that trains with torch and
# registers ONNX models. CPU by default; for CUDA pass the CUDA build of torch and its index:
#
#   docker build -f infra/docker/trainer.Dockerfile -t fermion-trainer .
#   docker build -f infra/docker/trainer.Dockerfile -t fermion-trainer:cuda \
#       --build-arg TORCH=torch==2.13.0 --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu130 .
# checkov:skip=CKV_DOCKER_2:no port to probe; it exits on a lost bus, and the orchestrator restarts it (JetStream redelivers its job).
# The fermion wheel, built from the package sources alone (.dockerignore keeps venvs and caches out);
# only the wheel reaches the image below.
FROM python:3.11-slim-bookworm AS wheel
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY fermion fermion
COPY events events
COPY model_store model_store
COPY compile compile
COPY functions functions
COPY service service
COPY training training
COPY infra infra
COPY imaging imaging
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM python:3.11-slim-bookworm
ARG TORCH=torch==2.13.0+cpu
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
# torch first and alone, so that nothing else pulls the default (CUDA) build from PyPI.
RUN pip install --no-cache-dir --index-url "${TORCH_INDEX}" "${TORCH}"
COPY infra/docker/requirements/common.txt infra/docker/requirements/trainer.txt /tmp/requirements/
RUN pip install --no-cache-dir -r /tmp/requirements/trainer.txt && rm -rf /tmp/requirements
COPY --from=wheel /wheels /tmp/wheels
RUN pip install --no-cache-dir --no-deps /tmp/wheels/fermion-*.whl && rm -rf /tmp/wheels \
    && useradd --system --uid 10001 --home-dir /var/lib/fermion --create-home fermion
USER 10001
ENV FERMION_HOME=/var/lib/fermion
CMD ["python", "-m", "fermion.functions.trainer"]
