# The inference function for GPU nodes (Knative with nvidia.com/gpu, ECS, docker --gpus): the GPU
# build of ONNX Runtime with the CUDA 13 and cuDNN 9 libraries it links against, as locked wheels
# (no CUDA base image: the driver comes from the NVIDIA container toolkit). gpu_entry.py preloads
# those libraries (onnxruntime.preload_dlls) before the function starts, so the providers resolve
# without LD_LIBRARY_PATH. TensorRT 10 is NVIDIA's index only (requirements/tensorrt.txt).
#
#   docker run --gpus all -p 127.0.0.1:8080:8080 -e FERMION_STORE_URL=s3://bucket fermion/inference-gpu
# Build with `python -m fermion.infra.images build inference-gpu` (or `fermion deploy compose up`), which
# lays out the context this file expects: requirements.lock (requirements/inference-gpu.lock, every package
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
    FERMION_HOME=/var/lib/fermion \
    FERMION_TRT_CACHE_DIR=/var/lib/fermion/trt-cache \
    FERMION_REQUIRE_GPU=true
COPY gpu_entry.py /opt/fermion/gpu_entry.py
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/v2/health/live', timeout=2)"]
# Inside the container the network namespace is the boundary: listen on all of its interfaces.
CMD ["python", "/opt/fermion/gpu_entry.py", "--host", "0.0.0.0", "--port", "8080"]
