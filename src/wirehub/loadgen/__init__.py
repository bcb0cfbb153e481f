"""wirehub benchmark load generator: one process acting as up to ~11k raw WebSocket clients."""

__all__: list[str] = []
