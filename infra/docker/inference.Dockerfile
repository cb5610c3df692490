# The inference function for GPU nodes (Knative with nvidia.com/gpu, ECS, docker --gpus): the GPU
# build of ONNX Runtime with the CUDA 13 and cuDNN 9 libraries it links against, as locked wheels
# (no CUDA base image: the driver comes from the NVIDIA container toolkit). gpu_entry.py preloads
# those libraries (onnxruntime.preload_dlls) before the function starts, so the providers resolve
# without LD_LIBRARY_PATH. TensorRT 10 is NVIDIA's index only (requirements/tensorrt.txt).
#
#   docker run --gpus all -p 127.0.0.1:8080:8080 -e FERMION_STORE_URL=s3://bucket fermion/inference-gpu
# Build with `python -m fermion.infra.images build inference-gpu` (or `fermion deploy compose up`), which
# lays out the context this file expects: requirements.lock (requirements/inference-gpu.lock, every package
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
    FERMION_TRT_CACHE_DIR=/var/lib/fermion/trt-cache \
    FERMION_REQUIRE_GPU=true
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/v2/health/live', timeout=2)"]
# Inside the container the network namespace is the boundary: listen on all of its interfaces.
CMD ["python", "/opt/fermion/gpu_entry.py", "--host", "0.0.0.0", "--port", "8080"]
