"""Fermion: event-driven, serverless ML on NATS JetStream, an object-store registry and ONNX Runtime."""
