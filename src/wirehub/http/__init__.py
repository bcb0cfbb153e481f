"""HTTP/1.1 without I/O: requests, responses, parsing, routing, static files."""
