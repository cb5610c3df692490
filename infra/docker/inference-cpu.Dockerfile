# The inference function as a CPU container (Knative CPU overlay, docker compose): CPU ONNX Runtime
# behind uvicorn, through the function's own entry point (binds first, imports after).
#
#   docker build -f infra/docker/inference-cpu.Dockerfile -t fermion-inference-cpu .
#   docker run -p 127.0.0.1:8080:8080 -e FERMION_STORE_URL=s3://bucket fermion-inference-cpu
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
COPY infra/docker/requirements/common.txt infra/docker/requirements/inference-cpu.txt /tmp/requirements/
RUN pip install --no-cache-dir -r /tmp/requirements/inference-cpu.txt && rm -rf /tmp/requirements
COPY --from=wheel /wheels /tmp/wheels
# A wheel install (not editable) writes the .pyc files, so no module compiles at start-up.
RUN pip install --no-cache-dir --no-deps /tmp/wheels/fermion-*.whl && rm -rf /tmp/wheels \
    && useradd --system --uid 10001 --home-dir /var/lib/fermion --create-home fermion
USER 10001
ENV FERMION_HOME=/var/lib/fermion \
    FERMION_PROVIDERS='["CPUExecutionProvider"]'
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/v2/health/live', timeout=2)"]
# Inside the container the network namespace is the boundary: listen on all of its interfaces.
CMD ["python", "-m", "fermion.functions.inference", "--host", "0.0.0.0", "--port", "8080"]
