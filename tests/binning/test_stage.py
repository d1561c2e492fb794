"""The binning stage's bound on held windows, without sockets: a real bundle's syndrome decoder,
real payloads, windows handed over as the aligner hands them."""
from __future__ import annotations

import asyncio

from prometheus_client import CollectorRegistry

from ndsc.bundle import load_bundle
from tests.binning.conftest import test_windows


def test_a_group_that_floods_the_binning_stage_evicts_its_own_windows_never_another_groups(binning_bundle):
    """Windows whose side source is missing wait for their edge's direct payload. With room for 4, a
    group that sends 6 such windows after another group's 2 gives up its own oldest 4 (estimated,
    counted as timeouts); the other group's windows stay held until they are answered."""
    from edge_encoder.encoder import EdgeEncoder
    from fusion_decoder.aligner import AlignedWindow
    from fusion_decoder.binning import BinningStage
    from fusion_decoder.metrics import DecoderMetrics

    bundle = load_bundle(binning_bundle)
    spec = bundle.sources[1].binning
    start, windows = test_windows(binning_bundle)
    payload = spec.initial_payload(spec.planes_of(EdgeEncoder(bundle, 1).symbols(windows[0][1])))
    registry = CollectorRegistry()
    released: list[AlignedWindow] = []

    async def enqueue(w: AlignedWindow) -> None:
        released.append(w)

    def window(group: str, index: int) -> AlignedWindow:
        return AlignedWindow(group, index, [None, payload], [None, None], 0.0, symbols=[None, None])

    async def scenario() -> tuple[int, int]:
        stage = BinningStage(bundle, DecoderMetrics(registry), enqueue, lambda j, p: None, timeout=60.0, max_held=4)
        try:
            for k in range(2):
                await stage.hold(window("calm", start + k))
            for k in range(6):
                await stage.hold(window("flood", start + k))
            for _ in range(1000):  # until the held windows asked for their direct payloads (10 s at most)
                if stage.settled_below("calm", 1, start + 1) == start and \
                        registry.get_sample_value("ndsc_syndrome_requests_total", {
                            "group": "calm", "source": "1", "kind": "direct"}) == 2:
                    break
                await asyncio.sleep(0.01)
            stage.settle(released)  # decoded and journaled, as the pipeline does next
            return stage.settled_below("calm", 1, start + 1), stage.settled_below("flood", 1, start + 5)
        finally:
            await stage.close()

    calm_settled, flood_settled = asyncio.run(scenario())
    # its own oldest, estimated
    assert [(w.group, w.window, w.payloads[1]) for w in released] == [("flood", start + k, None) for k in range(4)]
    assert calm_settled == start and flood_settled == start + 4  # calm's two windows still wait for answers
    timeouts = lambda group: registry.get_sample_value(  # noqa: E731
        "ndsc_syndrome_windows_total", {"group": group, "source": "1", "outcome": "timeout"})
    assert timeouts("flood") == 4 and not timeouts("calm")
