"""The inference function: Open Inference Protocol v2 over ONNX Runtime."""
