"""The fusion decoder service: gRPC server, aligner, joint decoding runtime, metrics."""
