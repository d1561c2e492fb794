"""Syndrome coding of a right view's symbols against a disparity-mixture model of the decoded left.

The code lives where the product uses it: the edge's side (tiles, planes, accumulated syndromes,
escapes) in :mod:`ndsc.stereo_tiles`, the decoder's (likelihoods, BP requests, calibration, request
sizing) in :mod:`fusion_decoder.stereo_tiles`. This module gathers both for the offline benchmark
(``benchmarks/stereo_binning.py``) and the study's tests.
"""
from __future__ import annotations

from fusion_decoder.stereo_tiles import (FIRST_REQUEST, RAW_FRACTION, SCALE_BITS, SCALE_LOG2_RANGE, UNIFORM_MIX,
                                         LlrCalibration, PlaneModes, RequestSizer, TileResult, TileSurprise,
                                         _bit_llr, _least_passing, decode_tile, mixture_bits, quantise_scale,
                                         request_grid)
from ndsc.stereo_tiles import (BP_ITERATIONS, CHECK_BITS, ESCAPE_COUNT_BITS, ESCAPE_VALUE_BITS, STEP_BITS, IndexMap,
                               PriorPlanes, TileBits, encode_tile, code_plane_bits, decode_plane_bits, spread_checks,
                               tile_spec)

__all__ = ["BP_ITERATIONS", "CHECK_BITS", "ESCAPE_COUNT_BITS", "ESCAPE_VALUE_BITS", "FIRST_REQUEST", "RAW_FRACTION",
           "SCALE_BITS", "SCALE_LOG2_RANGE", "STEP_BITS", "UNIFORM_MIX", "IndexMap", "LlrCalibration", "PlaneModes",
           "PriorPlanes", "RequestSizer", "TileBits", "TileResult", "TileSurprise", "_bit_llr", "_least_passing",
           "decode_tile", "encode_tile", "mixture_bits", "quantise_scale", "code_plane_bits", "decode_plane_bits",
           "request_grid", "spread_checks", "tile_spec"]
