"""ndsc core: entropy coding, model bundles, sources, metrics, bounds, wire stubs, CLI.

Depends only on numpy, scipy, constriction, grpcio and protobuf; never on torch.
"""

__version__ = "0.1.0"
