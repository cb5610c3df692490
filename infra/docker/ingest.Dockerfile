# The ingest function as a container (Kubernetes Deployment, docker compose): uploads, training
# requests and the registry API behind uvicorn. No ONNX Runtime, no torch.
# Build with `python -m fermion.infra.images build ingest` (or `fermion deploy compose up`), which
# lays out the context this file expects: requirements.lock (requirements/ingest.lock, every package
# with its sha256) and wheels/ (those wheels and the fermion wheel). Nothing is downloaded here.
ARG BASE=python:3.11-slim-bookworm
FROM ${BASE} AS install
COPY requirements.lock /tmp/requirements.lock
COPY wheels /tmp/wheels
# Offline and exact: only the locked wheels (each checked against its sha256), then fermion itself.
RUN python3 -m venv /opt/fermion \
    && /opt/fermion/bin/pip install --no-cache-dir --no-index --find-links /tmp/wheels --require-hashes \
       --no-deps -r /tmp/requirements.lock \
    && /opt/fermion/bin/pip install --no-cache-dir --no-index --no-deps /tmp/wheels/fermion-*.whl

FROM ${BASE}
RUN useradd --system --uid 10001 --home-dir /var/lib/fermion --create-home fermion
COPY --from=install /opt/fermion /opt/fermion
USER 10001
ENV PATH=/opt/fermion/bin:$PATH \
    FERMION_HOME=/var/lib/fermion
EXPOSE 8001
HEALTHCHECK --interval=5s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8001/readyz', timeout=2)"]
CMD ["uvicorn", "fermion.functions.ingest.app:app", "--host", "0.0.0.0", "--port", "8001", "--no-access-log"]
