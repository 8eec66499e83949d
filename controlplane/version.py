"""shoal's version, in one place."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("shoal")
except PackageNotFoundError:  # running from a checkout that is not installed
    __version__ = "0.1.0"
