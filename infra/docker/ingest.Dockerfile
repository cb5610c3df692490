# The ingest function as a container (Kubernetes Deployment, docker compose): uploads, training
# requests and the registry API behind uvicorn. No ONNX Runtime, no torch.
# Build with `python -m fermion.infra.images build ingest` (or `fermion deploy compose up`), which
# lays out the context this file expects: requirements.lock (requirements/ingest.lock, every package
# with its sha256) and wheels/ (those wheels and the fermion wheel). Nothing is downloaded here.
ARG BASE=python:3.11-slim-bookworm
FROM ${BASE} AS install
COPY . /tmp/context
# Offline and exact: only the locked wheels (each checked against its sha256), then fermion itself.
# What the image needs is staged under /out, so that the final stage adds it as one layer.
RUN python3 -m venv /opt/fermion \
    && /opt/fermion/bin/pip install --no-cache-dir --no-index --find-links /tmp/context/wheels --require-hashes \
       --no-deps -r /tmp/context/requirements.lock \
    && /opt/fermion/bin/pip install --no-cache-dir --no-index --no-deps /tmp/context/wheels/fermion-*.whl \
    && mkdir -p /out/opt /out/var/lib/fermion && mv /opt/fermion /out/opt/ \
    && cp /tmp/context/*.py /out/opt/fermion/ 2>/dev/null; chown -R 10001:10001 /out/var/lib/fermion

FROM ${BASE}
COPY --from=install /out /
# A numeric user with no passwd entry: nothing in the image runs as root, and no layer adds a user.
USER 10001:10001
ENV PATH=/opt/fermion/bin:$PATH \
    FERMION_HOME=/var/lib/fermion
EXPOSE 8001
HEALTHCHECK --interval=5s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8001/readyz', timeout=2)"]
CMD ["uvicorn", "fermion.functions.ingest.app:app", "--host", "0.0.0.0", "--port", "8001", "--no-access-log"]
