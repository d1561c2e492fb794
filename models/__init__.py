"""The torch models shared by training and serving: layers, encoders g_a, priors, joint
decoders g_s and the distributed codec.

Imports point one way: ``training → fusion_decoder → models → ndsc``. Serving builds a
bundle's decoder from here without importing ``training``; training builds, trains and
exports the same classes.
"""
