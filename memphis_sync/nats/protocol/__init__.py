"""The NATS wire protocol, sans-IO: events, the parser, the encoders and headers. Nothing here
touches a socket, a thread, a clock or TLS (``tests/test_layering.py`` checks it)."""
