"""Kinds: where a job's call runs (``process``, ``thread``, ``dask``), loaded lazily by name."""
