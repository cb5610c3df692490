# The inference function as a long-running container for GPU nodes (ECS, Kubernetes, Knative):
# uvicorn through the function's own entry point, which binds first and imports with the garbage
# collector off (functions/inference/__main__.py). Run with the NVIDIA container toolkit (--gpus).
#
#   docker build -f infra/docker/inference.Dockerfile -t fermion-inference .
#   docker run --gpus all -p 127.0.0.1:8080:8080 -e FERMION_STORE_URL=s3://bucket fermion-inference
FROM python:3.11-slim
WORKDIR /srv/fermion
COPY pyproject.toml README.md ./
COPY fermion fermion
COPY events events
COPY model_store model_store
COPY compile compile
COPY functions functions
COPY infra infra
COPY imaging imaging
# No torch. onnxruntime-gpu's [cuda,cudnn] extras bring the CUDA 13 and cuDNN 9 libraries it is built
# against as wheels; tensorrt-cu13-libs the TensorRT ones. `pip install .` (not editable) also writes the .pyc files,
# so no module is compiled at start-up.
RUN pip install --no-cache-dir . "onnxruntime-gpu[cuda,cudnn]" tensorrt-cu13-libs \
    && rm -rf /srv/fermion/*
ENV FERMION_HOME=/var/lib/fermion \
    FERMION_TRT_CACHE_DIR=/var/lib/fermion/trt-cache \
    FERMION_REQUIRE_GPU=true
EXPOSE 8080
# Inside the container the network namespace is the boundary: listen on all of its interfaces.
CMD ["python", "-m", "fermion.functions.inference", "--host", "0.0.0.0", "--port", "8080"]
