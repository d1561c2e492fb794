"""ndsc core: entropy coding, model bundles, sources, metrics, bounds, wire stubs.

Depends only on numpy, scipy, constriction, grpcio and protobuf; never on torch, and imports
nothing above it (the ``ndsc`` command line is ``app/``; ``python -m ndsc`` runs it).
"""

__version__ = "0.1.0"
