# The trainer: a JetStream consumer (python -m fermion.functions.trainer) that trains with torch and
# registers ONNX models. The lock pins the CPU build of torch (torch==2.13.0+cpu, from
# https://download.pytorch.org/whl/cpu); a CUDA trainer locks the CUDA build the same way.
# checkov:skip=CKV_DOCKER_2:no port to probe; it exits on a lost bus, and the orchestrator restarts it (JetStream redelivers its job).
# Build with `python -m fermion.infra.images build trainer-cpu` (or `fermion deploy compose up`), which
# lays out the context this file expects: requirements.lock (requirements/trainer-cpu.lock, every package
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
    FERMION_HOME=/var/lib/fermion
CMD ["python", "-m", "fermion.functions.trainer"]
