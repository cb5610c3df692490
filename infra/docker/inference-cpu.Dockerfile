# The inference function as a CPU container (Knative CPU overlay, docker compose): CPU ONNX Runtime
# behind uvicorn, through the function's own entry point (binds first, imports after).
# Build with `python -m fermion.infra.images build inference-cpu` (or `fermion deploy compose up`), which
# lays out the context this file expects: requirements.lock (requirements/inference-cpu.lock, every package
# with its sha256), wheels/ (those wheels) and fermion/ (the fermion wheel). Nothing is downloaded here.
# checkov:skip=CKV_DOCKER_7:FROM is the BASE build argument, whose default is a tagged release (below)
ARG BASE=python:3.11-slim-bookworm
FROM ${BASE} AS install
COPY requirements.lock /tmp/context/requirements.lock
COPY wheels /tmp/context/wheels
# Offline and exact: only the locked wheels, each checked against its sha256. This layer changes only
# with the lock, so a rebuild after a code change reuses it.
RUN python3 -m venv /opt/fermion \
    && /opt/fermion/bin/pip install --no-cache-dir --no-index --find-links /tmp/context/wheels --require-hashes \
       --no-deps -r /tmp/context/requirements.lock
COPY fermion /tmp/context/fermion
# Then fermion itself; what the image needs is staged under /out, so the final stage adds one layer.
RUN /opt/fermion/bin/pip install --no-cache-dir --no-index --no-deps /tmp/context/fermion/fermion-*.whl \
    && { cp /tmp/context/fermion/*.py /opt/fermion/ 2>/dev/null || true; } \
    && mkdir -p /out/opt /out/var/lib/fermion && cp -a /opt/fermion /out/opt/ \
    && chown -R 10001:10001 /out/var/lib/fermion

FROM ${BASE}
COPY --from=install /out /
# A numeric user with no passwd entry: nothing in the image runs as root, and no layer adds a user.
USER 10001:10001
ENV PATH=/opt/fermion/bin:$PATH \
    FERMION_HOME=/var/lib/fermion \
    FERMION_PROVIDERS='["CPUExecutionProvider"]'
EXPOSE 8080
HEALTHCHECK --interval=5s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/v2/health/live', timeout=2)"]
# Inside the container the network namespace is the boundary: listen on all of its interfaces.
CMD ["python", "-m", "fermion.functions.inference", "--host", "0.0.0.0", "--port", "8080"]
