"""Small 1-D batches run torch's native CPU convolutions (oneDNN's fixed cost per call dominates them),
with oneDNN's result; the decoder's GIL switch interval is a setting; the decoding thread gets the
next batch while the event loop publishes the one before."""
from __future__ import annotations

import asyncio

import numpy as np
import pytest
import torch
from prometheus_client import CollectorRegistry

from fusion_decoder.metrics import DecoderMetrics
from fusion_decoder.pipeline import DecodePipeline
from fusion_decoder.runtime import CPU_NATIVE_CONV_MAX_WINDOWS, CPU_SLICE, JointDecoderRuntime
from fusion_decoder.settings import DecoderSettings
from ndsc.bundle import load_bundle
from ndsc.bundles import default_bundle


@pytest.mark.parametrize("traced", [False, True])
@pytest.mark.parametrize("windows", [1, 3, CPU_NATIVE_CONV_MAX_WINDOWS, CPU_NATIVE_CONV_MAX_WINDOWS + 1, 40, 35])
def test_small_window_batches_run_native_convolutions_with_onednns_result(windows, traced):
    runtime = JointDecoderRuntime(load_bundle(default_bundle("ecg-synth-quick")), device="cpu")
    n, shape = runtime.n_sources, runtime.latent_shape(0)
    rng = np.random.default_rng(windows)
    latents = rng.normal(size=(windows, n, *shape)).astype(np.float32)
    present = np.ones((windows, n), np.float32)
    present[0, -1] = 0.0
    seen: list[bool] = []
    eager, graph = runtime.model, runtime.graph
    assert graph is not None
    called = graph if traced else eager

    def recording(*args):  # the decoder the runtime picked, with the convolution path it ran under
        seen.append(torch.backends.mkldnn.enabled)
        return called(*args)

    if traced:
        runtime.graph = recording
    else:
        runtime.graph, runtime.model = None, recording
    x_hat = runtime.synthesise(latents, present)
    assert torch.backends.mkldnn.enabled  # the switch never outlives the call
    # slices of CPU_SLICE windows: the last of 40 holds 8 (oneDNN), the last of 35 holds 3 (native)
    expected = [min(CPU_SLICE, windows - k) > CPU_NATIVE_CONV_MAX_WINDOWS for k in range(0, windows, CPU_SLICE)]
    assert seen == expected
    with torch.inference_mode():
        reference = eager(torch.from_numpy(latents), torch.from_numpy(present)).numpy() * runtime.output_scale
    np.testing.assert_allclose(x_hat, reference, rtol=1e-4, atol=1e-5 * float(np.abs(reference).max()))


@pytest.mark.parametrize("bundle", ["ecg-synth-quick", "ecg-12lead"])
def test_window_bundles_decode_through_a_traced_graph_bit_for_bit_as_eager(bundle):
    runtime = JointDecoderRuntime(load_bundle(default_bundle(bundle)), device="cpu")
    graph = runtime.graph
    assert graph is not None  # traced at load: synthesis runs without retaking the GIL per op
    n, shape = runtime.n_sources, runtime.latent_shape(0)
    rng = np.random.default_rng(7)
    for windows in (1, 2, 9, CPU_SLICE + 5):
        latents = rng.normal(size=(windows, n, *shape)).astype(np.float32)
        present = (rng.random((windows, n)) > 0.3).astype(np.float32)
        traced = runtime.synthesise(latents, present)
        runtime.graph = None
        try:
            eager = runtime.synthesise(latents, present)
        finally:
            runtime.graph = graph
        assert np.array_equal(traced, eager), windows


class _BranchesOnPresence(torch.nn.Module):
    """A decoder whose output depends on Python control flow over its input: trace cannot follow it."""

    def __init__(self, inner: torch.nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, y_hat: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        out = self.inner(y_hat, present)
        return out * 2 if bool(present.all()) else out


def test_a_decoder_the_trace_cannot_follow_runs_eager_and_whole_frame_bundles_are_not_traced(caplog):
    runtime = JointDecoderRuntime(load_bundle(default_bundle("ecg-synth-quick")), device="cpu")
    runtime.model = _BranchesOnPresence(runtime.model).eval()
    with caplog.at_level("INFO", logger="ndsc.decoder"):
        assert runtime._traced_graph() is None
    assert "joint decoder runs eager" in caplog.text and "differs from the eager decoder" in caplog.text
    stereo = JointDecoderRuntime(load_bundle(default_bundle("stereo-middlebury")), device="cpu")
    assert stereo.graph is None  # frames of any size: their latent grids vary


def test_the_decoders_gil_switch_interval_is_bounded():
    assert DecoderSettings(bundle="/b").validate().switch_interval == 0.0005
    for bad in (0.0, 1.0):
        with pytest.raises(ValueError, match="switch_interval"):
            DecoderSettings(bundle="/b", switch_interval=bad).validate()


def test_the_next_batch_decodes_while_the_last_one_is_published_and_every_window_comes_out_in_order():
    runtime = JointDecoderRuntime(load_bundle(default_bundle("ecg-synth-quick")), device="cpu")
    shape = runtime.latent_shape(0)

    class Watched(DecodePipeline):
        published: list[tuple[list[int], bool]] = []

        def _publish(self, batch, x_hat, present):
            # was the next batch already with the decoding thread while this one was published?
            self.published.append(([w.window for w in batch], self._ahead is not None))
            super()._publish(batch, x_hat, present)

    async def scenario():
        pipeline = Watched(runtime, DecoderMetrics(CollectorRegistry()), deadline=5.0, max_batch=4)
        pipeline.start()
        subscriber = pipeline.broadcaster.add("", False, False)
        for window in range(12):  # 12 complete windows queued at once: batches of 4
            for source in range(runtime.n_sources):
                held = pipeline.hold("g", window, source, b"", 1, symbols=np.zeros(shape, np.int64))
                await pipeline.release(held.released)
        await asyncio.wait_for(pipeline._queue.join(), 60)
        out = [subscriber.get_nowait() for _ in range(subscriber.qsize())]
        await pipeline.close()
        return pipeline.published, len(out)

    published, sent = asyncio.run(scenario())
    assert [windows for windows, _ in published] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]]
    assert [ahead for _, ahead in published] == [True, True, False]  # nothing left after the third
    assert sent == 12
