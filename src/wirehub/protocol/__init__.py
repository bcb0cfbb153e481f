"""Sans-I/O protocol layer: the WebSocket engine and (later) our wire format."""
