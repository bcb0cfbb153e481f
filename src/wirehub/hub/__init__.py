"""The hub layer: what user code talks to. It never touches sockets."""
