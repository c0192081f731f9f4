"""The `spira` command line: a client of the core (spira_lib) and of the flows."""
