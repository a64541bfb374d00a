"""ws: coordinate several repositories that share one PostgreSQL database and one Redis as one system."""

__version__ = "0.1.0"
