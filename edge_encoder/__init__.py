"""The edge node: source → ONNX analysis transform → quantise → entropy code → gRPC.

Never imports torch (a test asserts it).
"""
