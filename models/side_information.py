"""Decoder-side Wyner–Ziv refinement of a rectified stereo pair coded by block transforms.

Each camera's bits say only which quantisation cell each transform coefficient lies in:
``y ∈ [ŷ − Δ/2, ŷ + Δ/2]`` (Δ = 1/gain of the operating point). At low rate many cells are
wide (the zero cell above all), and whatever the decoder puts there is a guess. The other
camera saw the same scene: its reconstruction, moved by the disparity between the views,
is a second, independent estimate. :func:`refine_views` blends it into each view where the
two agree locally, weighted by how coarse each view's quantiser is and by how good a warped
view can be, and then projects the result back onto the view's own cells (clamps every
coefficient into its cell), so that the bits the view sent are honoured exactly and a wrong
match (an occlusion, a specular patch) can move a coefficient by at most its cell. No
training: disparity is found by block matching on the two reconstructions, so it adds
nothing to the rate and nothing to the bundle but the analysis transforms the encoders
already use.

Typical use (inside a decoder, on (B, 2, 3, H, W) reconstructions in model units)::

    x = refine_views(x, y_hat, step, analysis, inverse, present)
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

#: the search covers disparities up to this fraction of the image width (consistent matches on the
#: held-out Middlebury scenes and the scikit-image pair: 99.9 % below 0.22 of it; 0.2 cost 0.06 dB) ...
MAX_DISPARITY_FRACTION = 0.25
#: ... and never more than this many pixels (bounds the decoder's work on wide frames)
MAX_DISPARITY = 256
#: side of the square window whose mean absolute difference scores a candidate disparity
MATCH_WINDOW = 9
#: searches wider than this run coarse to fine: every candidate at half resolution with a
#: COARSE_WINDOW² box (13 beat 5, 7 and 9 there), then ± REFINE_RADIUS around twice the winner
#: at full resolution. 7× faster than the full search (0.4 s against 2.8 s for the 741 × 500
#: scikit-image pair, one thread), which the live decoder needs; it costs 0.01 dB when both views
#: code at quality 1 and 0.14 dB on a right view at 1 beside a left view at 5 (held-out scenes).
COARSE_ABOVE = 32
COARSE_WINDOW = 13
REFINE_RADIUS = 2
#: a match counts where the other view's match points back to within this many pixels
CONSISTENCY_PIXELS = 1
#: side of the window of the local disagreement that down-weights the other view
AGREEMENT_WINDOW = 5
#: the other view's weight falls as exp(−disagreement / this), in (model units)²: 300 on 8-bit values
AGREEMENT_SCALE = 300.0 / 255.0 ** 2
#: the error of a warped view that no quantiser explains (interpolation, exposure, reflections), in
#: (model units)²: warped from the *originals* by their own disparity, held-out views reached about
#: 30 dB where the match was consistent (MSE ≈ 65 on 8-bit values). Without it a finely coded view
#: averaged in a worse warped one and lost 0.16 dB at the top point; 30 and 150 did no better.
WARP_NOISE = 65.0 / 255.0 ** 2
#: interpolation of the sub-pixel warp: bicubic keeps more of the other view's detail than bilinear
#: (+0.04–0.05 dB on a right view beside a left at the top point, cones and Pipes, every point)
WARP_MODE = "bicubic"


class _RunningMinimum:
    """Per-pixel argmin over candidates d = 0, 1, … fed one cost map at a time, with the costs of the
    winner's neighbours (d ± 1) for a sub-pixel parabola. Memory: a few maps, never a cost volume."""

    def __init__(self, like: torch.Tensor):
        self.inf = torch.finfo(like.dtype).max
        self.best = torch.full_like(like, self.inf)
        self.below, self.above = torch.full_like(like, self.inf), torch.full_like(like, self.inf)
        self.arg = torch.zeros(like.shape, dtype=torch.long, device=like.device)
        self.prev: torch.Tensor | None = None

    def update(self, d: int, cost: torch.Tensor) -> None:
        self.above = torch.where(self.arg == d - 1, cost, self.above)  # the last winner's upper neighbour
        better = cost < self.best
        self.below = torch.where(better, cost if self.prev is None else self.prev, self.below)
        self.above.masked_fill_(better, self.inf)
        self.best = torch.minimum(cost, self.best)
        self.arg.masked_fill_(better, d)
        self.prev = cost

    def result(self, last: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(integer argmin, argmin refined by a parabola through the winner and its neighbours)."""
        curvature = self.below - 2 * self.best + self.above
        inner = (self.arg > 0) & (self.arg < last) & (curvature > 0) & (self.above < self.inf)
        offset = torch.where(inner, 0.5 * (self.below - self.above) / curvature.clamp_min(1e-12),
                             torch.zeros_like(self.best))
        return self.arg, self.arg.to(self.best.dtype) + offset.clamp(-0.5, 0.5)


def _box_sum(x: torch.Tensor, window: int) -> torch.Tensor:
    """Sum over a ``window``² box around each pixel of (B, H, W) (zeros outside), by running sums.

    Unnormalised at the borders: a pixel's window is the same for every candidate disparity,
    so the argmin and the parabola are unaffected. (Running sums: 5× faster than avg_pool2d.)"""
    r = window // 2
    c = F.pad(x, (r + 1, r, r + 1, r)).cumsum(-1)
    c = (c[..., window:] - c[..., :-window]).cumsum(-2)
    return c[..., window:, :] - c[..., :-window, :]


def stereo_disparities(left: torch.Tensor, right: torch.Tensor, max_disparity: int, window: int = MATCH_WINDOW
                       ) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """Per-pixel disparities d ≥ 0 of a rectified pair of grey images (B, H, W), both ways:
    ``left(y, x) ≈ right(y, x − d_left)`` and ``right(y, x) ≈ left(y, x + d_right)``.

    Block matching: the mean absolute difference over a ``window``² box scores each candidate.
    Coarse to fine when the search is wide (:data:`COARSE_ABOVE`): every candidate on the
    half-resolution pair, then five candidates around twice the coarse winner at full resolution.

    Returns:
        ((integer, sub-pixel) disparity of the left view, the same of the right view), each (B, H, W).
    """
    if max_disparity <= COARSE_ABOVE or min(left.shape[-2:]) < 4 * window:
        return _search(left, right, max_disparity, window)
    half = lambda image: F.avg_pool2d(image.unsqueeze(1), 2, ceil_mode=True).squeeze(1)
    (_, coarse_left), (_, coarse_right) = _search(half(left), half(right), (max_disparity + 1) // 2, COARSE_WINDOW)
    # twice the sub-pixel coarse estimate, rounded: neighbours agree on their guess where the scene does
    up = lambda d: torch.round(2 * F.interpolate(d.unsqueeze(1), scale_factor=2, mode="nearest").squeeze(1)).long()
    return (_refine(left, right, up(coarse_left)[..., :left.shape[-2], :left.shape[-1]], +1, max_disparity, window),
            _refine(right, left, up(coarse_right)[..., :left.shape[-2], :left.shape[-1]], -1, max_disparity, window))


def _search(left: torch.Tensor, right: torch.Tensor, max_disparity: int, window: int
            ) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """Every candidate 0 … max_disparity for every pixel (see :func:`stereo_disparities`).

    Each view is matched in a pass of its own: deriving the right view's scores from the left's
    (shifted by d) costs half the time but lost 0.03–0.1 dB on the held-out scenes."""
    best_left, best_right = _RunningMinimum(left), _RunningMinimum(left)
    for d in range(max_disparity + 1):
        # right(y, x − d) and left(y, x + d); the columns that wrap around are out of view and score badly
        best_left.update(d, _box_sum((left - torch.roll(right, shifts=d, dims=-1)).abs(), window))
        best_right.update(d, _box_sum((right - torch.roll(left, shifts=-d, dims=-1)).abs(), window))
    return best_left.result(max_disparity), best_right.result(max_disparity)


def _refine(own: torch.Tensor, other: torch.Tensor, guess: torch.Tensor, direction: int, max_disparity: int,
            window: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Full-resolution disparity of ``own`` among the candidates guess − 2 … guess + 2 per pixel."""
    w = own.shape[-1]
    xs = torch.arange(w, device=own.device).view(1, 1, w)
    best = _RunningMinimum(own)
    span = range(-REFINE_RADIUS, REFINE_RADIUS + 1)
    for k, offset in enumerate(span):
        d = (guess + offset).clamp(0, max_disparity)
        shifted = other.gather(-1, (xs - direction * d).clamp(0, w - 1))  # other(y, x − direction·d(y, x))
        best.update(k, _box_sum((own - shifted).abs(), window))
    k, sub = best.result(len(span) - 1)
    base = guess - REFINE_RADIUS
    return (base + k).clamp(0, max_disparity), (base.to(sub.dtype) + sub).clamp(0, max_disparity)


def warp_rows(image: torch.Tensor, disparity: torch.Tensor, direction: int) -> torch.Tensor:
    """``image(y, x − direction·d(y, x))`` by :data:`WARP_MODE` sampling: (B, C, H, W), d (B, H, W)."""
    b, _, h, w = image.shape
    xs = torch.arange(w, dtype=image.dtype, device=image.device).view(1, 1, w) - direction * disparity
    ys = torch.arange(h, dtype=image.dtype, device=image.device).view(1, h, 1).expand(b, h, w)
    grid = torch.stack([2 * xs / max(w - 1, 1) - 1, 2 * ys / max(h - 1, 1) - 1], dim=-1)  # (B, H, W, 2)
    return F.grid_sample(image, grid, mode=WARP_MODE, padding_mode="border", align_corners=True)


def warp_rows_columns(image: torch.Tensor, disparity: torch.Tensor, x0: int, x1: int, direction: int) -> torch.Tensor:
    """Columns ``x0 … x1 − 1`` of :func:`warp_rows` of ``image`` (B, C, H, W) by one disparity per image
    (``disparity`` (B,)): the same samples, computed for those columns only."""
    b, _, h, w = image.shape
    xs = torch.arange(w, dtype=image.dtype, device=image.device)[x0:x1].view(1, 1, -1) - direction * disparity.view(-1, 1, 1)
    xs = xs.expand(b, h, x1 - x0)
    ys = torch.arange(h, dtype=image.dtype, device=image.device).view(1, h, 1).expand(b, h, x1 - x0)
    grid = torch.stack([2 * xs / max(w - 1, 1) - 1, 2 * ys / max(h - 1, 1) - 1], dim=-1)  # (B, H, x1 − x0, 2)
    return F.grid_sample(image, grid, mode=WARP_MODE, padding_mode="border", align_corners=True)


def consistent(disparity: torch.Tensor, back: torch.Tensor, direction: int,
               tolerance: int = CONSISTENCY_PIXELS) -> torch.Tensor:
    """Left–right check: where the other view's disparity at the matched pixel points back here.

    ``disparity``/``back`` (B, H, W) long, this view's and the other view's (opposite direction).
    """
    w = disparity.shape[-1]
    xs = torch.arange(w, device=disparity.device).view(1, 1, w)
    target = (xs - direction * disparity).clamp(0, w - 1)
    inside = (xs - direction * disparity >= 0) & (xs - direction * disparity < w)
    return inside & ((disparity - back.gather(-1, target)).abs() <= tolerance)


def block_analysis(x: torch.Tensor, analysis: torch.Tensor) -> torch.Tensor:
    """The encoder's transform of images in model units: (B, 3, H, W) → (B, K, H/s, W/s).

    The encoder codes x/scale − ½ (``block-dct``); model units are x/scale.
    """
    return F.conv2d(x - 0.5, analysis, stride=analysis.shape[-1])


def block_synthesis(c: torch.Tensor, inverse: torch.Tensor, stride: int) -> torch.Tensor:
    """Exact inverse of :func:`block_analysis`: (B, K, h, w) → (B, 3, s·h, s·w); ``inverse`` (3·s², K)."""
    return F.pixel_shuffle(F.conv2d(c, inverse[:, :, None, None]), stride) + 0.5


def project_onto_cells(x: torch.Tensor, y_hat: torch.Tensor, step: torch.Tensor, analysis: torch.Tensor,
                       inverse: torch.Tensor) -> torch.Tensor:
    """The image nearest to ``x`` (in the transform's metric) whose coefficients lie in their cells.

    x (B, 3, H, W); y_hat (B, K, h, w) dequantised coefficients; step (B, K) cell widths.
    """
    c = block_analysis(x, analysis)
    half = 0.5 * step[:, :, None, None]
    clamped = torch.maximum(torch.minimum(c, y_hat + half), y_hat - half)
    return x + block_synthesis(clamped - c, inverse, analysis.shape[-1]) - 0.5


def match_views(x: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor, int]]:
    """Each view's sub-pixel disparity, left–right consistency mask and warp direction.

    x (B, 2, 3, H, W) reconstructions; view 0 is the left camera. Returns per view
    (disparity (B, H, W) float, consistent (B, H, W) bool, direction ±1 for :func:`warp_rows`).
    """
    grey = x.mean(dim=2)  # (B, 2, H, W)
    max_d = max(1, min(MAX_DISPARITY, int(x.shape[-1] * MAX_DISPARITY_FRACTION)))
    # left(y, x) matches right(y, x − d); right(y, x) matches left(y, x + d)
    (d_left, sub_left), (d_right, sub_right) = stereo_disparities(grey[:, 0], grey[:, 1], max_d)
    return [(sub_left, consistent(d_left, d_right, +1), +1), (sub_right, consistent(d_right, d_left, -1), -1)]


def quantiser_noise(step: torch.Tensor) -> torch.Tensor:
    """Mean squared quantisation error of a view's cells, Δ²/12 averaged over coefficients: (B, N, K) → (B, N)."""
    return step.pow(2).mean(dim=-1) / 12


def blend_view(own: torch.Tensor, other: torch.Tensor, disparity: torch.Tensor, ok: torch.Tensor, direction: int,
               noise_own: torch.Tensor, noise_other: torch.Tensor, other_present: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One view's hand-made Wyner–Ziv estimate: the other view warped in and blended where they agree.

    own/other (B, 3, H, W) reconstructions; disparity/ok (B, H, W) the view's match; noise_* (B,);
    other_present (B,). Returns (blend, warped other view, the other view's per-pixel weight (B, 1, H, W)).
    Also used on row bands of crops when training :class:`models.view_fusion.ViewFusion`.
    """
    side = warp_rows(other, disparity, direction)  # (B, 3, H, W)
    disagreement = F.avg_pool2d((own - side).pow(2).mean(dim=1, keepdim=True), AGREEMENT_WINDOW,
                                stride=1, padding=AGREEMENT_WINDOW // 2, count_include_pad=False)
    # two noisy estimates weighted by their error variances: the view's own quantisation noise
    # (mean Δ²/12 of its cells) against the other's plus what warping adds (WARP_NOISE)
    share = (noise_own / (noise_own + noise_other + WARP_NOISE) * other_present).view(-1, 1, 1, 1)
    weight = share * torch.exp(-disagreement / AGREEMENT_SCALE) * ok.unsqueeze(1).to(own.dtype)
    return own + weight * (side - own), side, weight


def refine_views(x: torch.Tensor, y_hat: torch.Tensor, step: torch.Tensor, analysis: torch.Tensor,
                 inverse: torch.Tensor, present: torch.Tensor, fusion: "torch.nn.Module | None" = None
                 ) -> torch.Tensor:
    """Each view of a rectified pair refined with the other as side information (module docstring).

    Args:
        x: (B, 2, 3, H, W) the decoder's reconstructions, model units; view 0 is the left camera.
        y_hat: (B, 2, K, H/s, W/s) the dequantised coefficients the views sent.
        step: (B, 2, K) each coefficient's cell width (1 / the operating point's gain).
        analysis: (2, K, 3, s, s) each view's encoder transform; inverse: (2, 3·s², K) its inverse.
        present: (B, 2) which views arrived; a view refines only from a view that did.
        fusion: a learned correction of the hand-made estimate (:class:`models.view_fusion.ViewFusion`),
            applied before the final projection; None: the hand-made estimate alone.

    Returns:
        (B, 2, 3, H, W) refined reconstructions.
    """
    noise = quantiser_noise(step)  # (B, 2)
    out = []
    for i, (disparity, ok, direction) in enumerate(match_views(x)):
        j = 1 - i
        fused, side, weight = blend_view(x[:, i], x[:, j], disparity, ok, direction, noise[:, i], noise[:, j],
                                         present[:, j])
        refined = project_onto_cells(fused, y_hat[:, i], step[:, i], analysis[i], inverse[i])
        if fusion is not None:
            correction = fusion(x[:, i], noise[:, i], refined, side, weight, ok, noise[:, j], present[:, j])
            refined = project_onto_cells(refined + correction, y_hat[:, i], step[:, i], analysis[i], inverse[i])
        # a view that did not arrive has no cells: the decoder's estimate of it stands
        out.append(torch.where(present[:, i].view(-1, 1, 1, 1) > 0, refined, x[:, i]))
    return torch.stack(out, dim=1)


def filter_views(x: torch.Tensor, y_hat: torch.Tensor, step: torch.Tensor, analysis: torch.Tensor,
                 inverse: torch.Tensor, present: torch.Tensor, post_filter: torch.nn.Module) -> torch.Tensor:
    """Each view corrected by ``post_filter`` from itself alone, then projected into its own cells.

    The separate baseline's counterpart of :func:`refine_views` with a learned fusion (same
    arguments): the same network and projection, without the other view.
    """
    noise = quantiser_noise(step)  # (B, 2)
    out = []
    for i in range(x.shape[1]):
        refined = project_onto_cells(x[:, i] + post_filter(x[:, i], noise[:, i]), y_hat[:, i], step[:, i],
                                     analysis[i], inverse[i])
        out.append(torch.where(present[:, i].view(-1, 1, 1, 1) > 0, refined, x[:, i]))
    return torch.stack(out, dim=1)
