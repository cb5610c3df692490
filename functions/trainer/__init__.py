"""The trainer function: a JetStream worker that trains, compiles and registers models."""
