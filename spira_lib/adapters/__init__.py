"""Storage adapters behind :class:`spira_lib.ports.ObjectStore`."""
