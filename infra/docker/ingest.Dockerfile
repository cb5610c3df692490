# The ingest function as a container (Kubernetes Deployment, docker compose): uploads, training
# requests and the registry API behind uvicorn. No ONNX Runtime, no torch.
#
#   docker build -f infra/docker/ingest.Dockerfile -t fermion-ingest .
FROM python:3.11-slim-bookworm
COPY infra/docker/requirements/common.txt infra/docker/requirements/ingest.txt /tmp/requirements/
RUN pip install --no-cache-dir -r /tmp/requirements/ingest.txt && rm -rf /tmp/requirements
COPY pyproject.toml setup.py README.md /tmp/src/
COPY fermion /tmp/src/fermion
COPY events /tmp/src/events
COPY model_store /tmp/src/model_store
COPY compile /tmp/src/compile
COPY functions /tmp/src/functions
COPY infra /tmp/src/infra
COPY imaging /tmp/src/imaging
COPY service /tmp/src/service
COPY training /tmp/src/training
RUN pip install --no-cache-dir --no-deps /tmp/src && rm -rf /tmp/src \
    && useradd --system --uid 10001 --home-dir /var/lib/fermion --create-home fermion
USER 10001
ENV FERMION_HOME=/var/lib/fermion
EXPOSE 8001
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8001/healthz', timeout=2)"]
CMD ["uvicorn", "fermion.functions.ingest.app:app", "--host", "0.0.0.0", "--port", "8001", "--no-access-log"]
