"""The KServe reference: KServe's Python model server (`kserve.ModelServer`) with a custom
`kserve.Model` around ONNX Runtime, serving one ONNX file under the Open Inference Protocol v2.

Run by the KServe virtual environment's interpreter (see `common.kserve_python`), never imported
by Fermion:

    python kserve_model.py NAME MODEL.onnx PORT

Configured for its best showing: gRPC off (nothing here speaks it), per-request latency logging
off, access and trace logs off, one worker, the same CPU execution provider and thread count as Fermion. KServe binds
0.0.0.0 unconditionally; the benchmarks send traffic to loopback only, so the bind address is
narrowed to 127.0.0.1 here, which changes nothing about how requests are served.
"""

import logging
import os
import sys

import uvicorn


class _Loopback(uvicorn.Config):
    def __init__(self, *args, **kwargs):
        kwargs["host"] = "127.0.0.1"
        super().__init__(*args, **kwargs)


uvicorn.Config = _Loopback  # before kserve imports it

import kserve  # noqa: E402
import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402
from kserve import InferOutput, InferRequest, InferResponse  # noqa: E402


class OnnxModel(kserve.Model):
    def __init__(self, name: str, path: str) -> None:
        super().__init__(name)
        self.path = path
        self.session = None
        self.load()

    def load(self) -> bool:
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(os.environ.get("THREADS", "0"))
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(self.path, options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self.ready = True
        return self.ready

    async def predict(self, payload: InferRequest, headers=None, response_headers=None) -> InferResponse:
        x = payload.inputs[0].as_numpy().astype(np.float32, copy=False)
        outputs = self.session.run(None, {self.input_name: x})
        infer_outputs = []
        for meta, array in zip(self.session.get_outputs(), outputs, strict=True):
            out = InferOutput(name=meta.name, shape=list(array.shape), datatype="FP32")
            out.set_data_from_numpy(array, binary_data=False)
            infer_outputs.append(out)
        return InferResponse(model_name=self.name, infer_outputs=infer_outputs, response_id=payload.id or "")


if __name__ == "__main__":
    name, path, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    server = kserve.ModelServer(
        http_port=port, enable_grpc=False, enable_latency_logging=False, enable_docs_url=False, workers=1
    )
    for noisy in ("uvicorn.access", "kserve.trace"):  # a log line per request is not what is measured
        logging.getLogger(noisy).disabled = True
    server.start([OnnxModel(name, path)])
