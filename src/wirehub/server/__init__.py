"""The server layer: the only code that touches sockets."""
