# The ingest function as a container (Kubernetes Deployment, docker compose): uploads, training
# requests and the registry API behind uvicorn. No ONNX Runtime, no torch.
#
#   docker build -f infra/docker/ingest.Dockerfile -t fermion-ingest .
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
COPY infra/docker/requirements/common.txt infra/docker/requirements/ingest.txt /tmp/requirements/
RUN pip install --no-cache-dir -r /tmp/requirements/ingest.txt && rm -rf /tmp/requirements
COPY --from=wheel /wheels /tmp/wheels
RUN pip install --no-cache-dir --no-deps /tmp/wheels/fermion-*.whl && rm -rf /tmp/wheels \
    && useradd --system --uid 10001 --home-dir /var/lib/fermion --create-home fermion
USER 10001
ENV FERMION_HOME=/var/lib/fermion
EXPOSE 8001
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8001/healthz', timeout=2)"]
CMD ["uvicorn", "fermion.functions.ingest.app:app", "--host", "0.0.0.0", "--port", "8001", "--no-access-log"]
