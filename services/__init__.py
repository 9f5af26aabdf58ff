"""Use cases: what the API's routes and the CLI ask the engine to do, each in one function.

A service decides with `billing`, reads and writes through `adapters/db` repositories, and
starts or messages workflows through `adapters/temporal`. It knows nothing of HTTP: it raises
the failure kinds of `services/errors.py`, which the API maps to statuses (`api/errors.py`) and
the CLI to exit codes. The import-linter contracts in `pyproject.toml` keep `api` out of here.
"""
