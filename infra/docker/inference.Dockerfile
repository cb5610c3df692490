# The inference function for GPU nodes (Knative with nvidia.com/gpu, ECS, docker --gpus): the GPU
# build of ONNX Runtime with the CUDA 13, cuDNN 9 and TensorRT 10 libraries it links against, as
# wheels pinned in requirements/ (no CUDA base image: the driver comes from the NVIDIA container
# toolkit). gpu_entry.py preloads those libraries (onnxruntime.preload_dlls) before the function
# starts, so the providers resolve without LD_LIBRARY_PATH.
#
#   docker build -f infra/docker/inference.Dockerfile -t fermion-inference-gpu .
#   docker run --gpus all -p 127.0.0.1:8080:8080 -e FERMION_STORE_URL=s3://bucket fermion-inference-gpu
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
COPY infra/docker/requirements/common.txt infra/docker/requirements/inference-gpu.txt \
     infra/docker/requirements/tensorrt.txt /tmp/requirements/
# TensorRT 10's CUDA 13 wheels are on NVIDIA's index only (PyPI holds a stub that points there).
RUN pip install --no-cache-dir -r /tmp/requirements/inference-gpu.txt \
    && pip install --no-cache-dir --extra-index-url https://pypi.nvidia.com -r /tmp/requirements/tensorrt.txt \
    && rm -rf /tmp/requirements
COPY --from=wheel /wheels /tmp/wheels
COPY infra/docker/gpu_entry.py /usr/local/lib/fermion/gpu_entry.py
RUN pip install --no-cache-dir --no-deps /tmp/wheels/fermion-*.whl && rm -rf /tmp/wheels \
    && useradd --system --uid 10001 --home-dir /var/lib/fermion --create-home fermion
USER 10001
ENV FERMION_HOME=/var/lib/fermion \
    FERMION_TRT_CACHE_DIR=/var/lib/fermion/trt-cache \
    FERMION_REQUIRE_GPU=true
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/v2/health/live', timeout=2)"]
# Inside the container the network namespace is the boundary: listen on all of its interfaces.
CMD ["python", "/usr/local/lib/fermion/gpu_entry.py", "--host", "0.0.0.0", "--port", "8080"]
