"""What the tests, bench/ and scripts/ share, one module per idea.

- ``kit``: fixed names and instants, ``MutableClock``, ``TokenKit``, ``IssuerKit``.
- ``redis_server``: private redis-servers and clusters on free ports; ``free_port``.
- ``redis_proxy``: ``RedisFaultProxy``, a loopback proxy that cuts a Redis off.
- ``servers``: ``running_uvicorn()``, an app under uvicorn on a free port.
- ``propagation_peer``: a second process that verifies tokens off the revocation feed.
- ``web_app``: the app the HTTP tests run against, built like examples/app.py.
- ``stats``: ``percentile``.
- ``docs``: runs the Python examples of the docs pages.

bench/ and scripts/ import these as the package ``tests.support``: run them as
modules from the repository root (``python -m bench``, ``python -m
scripts.fuzz``), as the make targets do.
"""
