"""The monitor: drift per model version and the automatic rollout controller, one stateless consumer."""
