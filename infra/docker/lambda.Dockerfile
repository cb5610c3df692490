# One image for the Lambda functions; serverless.yml picks the handler per function.
FROM public.ecr.aws/lambda/python:3.11
COPY pyproject.toml README.md ${LAMBDA_TASK_ROOT}/src/
COPY fermion ${LAMBDA_TASK_ROOT}/src/fermion
COPY events ${LAMBDA_TASK_ROOT}/src/events
COPY model_store ${LAMBDA_TASK_ROOT}/src/model_store
COPY compile ${LAMBDA_TASK_ROOT}/src/compile
COPY functions ${LAMBDA_TASK_ROOT}/src/functions
COPY infra ${LAMBDA_TASK_ROOT}/src/infra
COPY imaging ${LAMBDA_TASK_ROOT}/src/imaging
# The base install has no torch: the inference and ingest functions never import it.
RUN pip install --no-cache-dir "${LAMBDA_TASK_ROOT}/src" --target "${LAMBDA_TASK_ROOT}"
CMD ["fermion.functions.inference.handler.handler"]
