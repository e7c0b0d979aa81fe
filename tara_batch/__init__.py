"""tara-batch: offline, distributed video embedding with TARA on Ray Data and LanceDB."""

__version__ = "0.1.0"
