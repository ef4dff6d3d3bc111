"""Shared test wiring: the default config, scripted backends, a service and app over them, and a
collector of the router's log records. Tests build on these instead of wiring ``RouterService``
by hand."""
