# One image for the Lambda functions; serverless.yml picks the handler per function (command).
# Amazon Linux 2023 (glibc 2.34): ONNX Runtime's wheels need glibc >= 2.28, which the Python 3.11
# base (Amazon Linux 2, glibc 2.26) lacks. CPU ONNX Runtime only: Lambda has no GPU. The Runtime
# Interface Client (awslambdaric, locked) is the entry point, so the image answers the Lambda Runtime
# API on any base. Lambda accepts a single-platform Docker v2 manifest only: push what
# `docker buildx build --provenance=false --platform linux/amd64` makes, not an index with attestations.
# checkov:skip=CKV_DOCKER_2:Lambda ignores HEALTHCHECK; the runtime API decides when a function is ready.
# checkov:skip=CKV_DOCKER_3:Lambda runs the image as its own unprivileged sandbox user, whatever USER says.
# Build with `python -m fermion.infra.images build lambda` (or `fermion deploy compose up`), which
# lays out the context this file expects: requirements.lock (requirements/lambda.lock, every package
# with its sha256), wheels/ (those wheels) and fermion/ (the fermion wheel). Nothing is downloaded here.
# checkov:skip=CKV_DOCKER_7:FROM is the BASE build argument, whose default is a tagged release (below)
ARG BASE=public.ecr.aws/lambda/python:3.12
FROM ${BASE} AS install
COPY requirements.lock /tmp/context/requirements.lock
COPY wheels /tmp/context/wheels
# Offline and exact: only the locked wheels, each checked against its sha256 (reused until the lock changes).
RUN python3 -m venv /opt/fermion \
    && /opt/fermion/bin/pip install --no-cache-dir --no-index --find-links /tmp/context/wheels --require-hashes \
       --no-deps -r /tmp/context/requirements.lock
COPY fermion /tmp/context/fermion
RUN /opt/fermion/bin/pip install --no-cache-dir --no-index --no-deps /tmp/context/fermion/fermion-*.whl

FROM ${BASE}
COPY --from=install /opt/fermion /opt/fermion
ENV PATH=/opt/fermion/bin:$PATH \
    FERMION_HOME=/tmp/fermion \
    FERMION_PROVIDERS='["CPUExecutionProvider"]'
ENTRYPOINT ["/opt/fermion/bin/python", "-m", "awslambdaric"]
CMD ["fermion.functions.inference.handler.handler"]
