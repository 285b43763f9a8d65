"""edgeport's version, in a module of its own: every layer may read it without importing the
package's front door (``runtime/__init__`` imports the bundle and the pipelines)."""

__version__ = "0.1.0"
