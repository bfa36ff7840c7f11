"""The AMT network assembled from its parts, with the frame-pair work separated from the per-time work."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch
from torch import nn

from ..errors import some_of
from . import cpu_kernels
from .correlation import CorrelationMode, WindowCorrelation, build_correlation
from .decoders import InitialDecoder, MultiFieldDecoder, RefiningDecoder
from .encoders import ContextPyramid, CorrelationFeatureEncoder, bottleneck_block, residual_block
from .layers import PReLUInPlace, conv, in_row_bands, resize, warp
from .update import UpdateBlock
from .variants import VariantSpec


@dataclass(frozen=True)
class PairFeatures:
    """Everything about a frame pair that does not depend on the time step.

    Both frames of the B pairs are stacked along the batch, frame 0's B samples first: the decoders warp
    them with one call, which a CPU runs on two threads instead of one.
    """

    mean: torch.Tensor  # B x 1 x 1 x 1, the joint mean of both frames
    frames: torch.Tensor  # 2B x 3 x H x W, mean removed, float32, full resolution
    context: list[torch.Tensor]  # 2B x C x h x w context pyramid of the (resized) frames, 1/2 .. 1/16
    correlation: WindowCorrelation
    grid: torch.Tensor  # 1 x 2 x h x w pixel coordinates at 1/8 of the working size
    scale_factor: float

    @property
    def batch(self) -> int:
        return self.mean.shape[0]

    def repeated(self, times: int) -> PairFeatures:
        """The same features tiled `times` along the batch (row t * B + b of each frame), for several
        time steps."""
        if times == 1:
            return self

        def tile(x: torch.Tensor) -> torch.Tensor:
            first, second = x.chunk(2)
            return torch.cat([first] * times + [second] * times)  # keeps a channels-last layout

        return replace(
            self,
            mean=self.mean.repeat(times, 1, 1, 1),
            frames=tile(self.frames),
            context=[tile(x) for x in self.context],
        )


# The correlation pyramid pools the 1/8-resolution features three times: 64 px leaves one pixel.
MIN_WORKING_SIDE = 64


def _check_pair(img0: torch.Tensor, img1: torch.Tensor, scale_factor: float) -> None:
    if img0.dim() != 4 or img0.shape[1] != 3 or img0.shape != img1.shape:
        raise ValueError(
            f"expected two B x 3 x H x W frames of one shape, got {tuple(img0.shape)} and {tuple(img1.shape)}"
        )
    if not (img0.is_floating_point() and img1.is_floating_point()):
        raise ValueError(
            f"frames must be floating-point tensors with values in [0, 1], got {img0.dtype} and {img1.dtype} "
            "(divide 8-bit frames by 255)"
        )
    height, width = img0.shape[-2:]
    work_h, work_w = int(height * scale_factor), int(width * scale_factor)
    if work_h % 16 or work_w % 16:
        raise ValueError(
            f"frame size {height}x{width} at scale {scale_factor} gives a working size {work_h}x{work_w} that is "
            "not a multiple of 16: pad the frames first (amt_vfi.Interpolator does this for you)"
        )
    if min(work_h, work_w) < MIN_WORKING_SIDE:
        raise ValueError(
            f"frame size {height}x{width} at scale {scale_factor} gives a working size {work_h}x{work_w}, below "
            f"the {MIN_WORKING_SIDE} px per side that the coarsest correlation level needs: pad the frames first "
            "(amt_vfi.Interpolator pads frames of any size)"
        )


def _check_times(times: float | Sequence[float]) -> None:
    """NaN or infinite time steps would give NaN frames, silently."""
    values = torch.as_tensor(times, dtype=torch.float64).flatten()  # numbers, lists, NumPy arrays
    if not torch.isfinite(values).all():
        shown = some_of([f"{value:g}" for value in values.tolist()])
        raise ValueError(f"time steps must be finite numbers (0 = img0, 1 = img1), got {shown}")


# Frames with more values than a padded 1080p RGB frame are encoded one at a time.
SEPARATE_ENCODING_VALUES = 3 * 1088 * 1920


class AMT(nn.Module):
    """All-Pairs Multi-Field Transforms for frame interpolation.

    `forward(img0, img1, embt)` matches the reference network; `encode` + `decode` split the work so a
    frame pair is encoded once and decoded for any number of time steps.
    """

    def __init__(self, spec: VariantSpec) -> None:
        super().__init__()
        self.spec = spec
        c0, c1, c2, c3 = spec.context_channels
        side = spec.side_channels
        block = bottleneck_block if spec.feature_block == "bottleneck" else residual_block
        self.feat_encoder = CorrelationFeatureEncoder(block, spec.feature_stem, spec.feature_stages, spec.feature_dim)
        self.encoder = ContextPyramid(spec.context_channels, spec.first_kernel)
        self.decoder4 = InitialDecoder(c3, c2, side)
        self.decoder3 = RefiningDecoder(c2, c1, side)
        self.decoder2 = RefiningDecoder(c1, c0, side)
        self.decoder1 = MultiFieldDecoder(c0, spec.fields, side)
        self.update4 = UpdateBlock(c2, spec.update)
        if spec.high_res_updates:
            self.update3_low = UpdateBlock(c1, spec.update, rescale=2)
            self.update2_low = UpdateBlock(c0, spec.update, rescale=4)
            self.update3_high = UpdateBlock(c1, spec.update)
            self.update2_high = UpdateBlock(c0, spec.update)
        else:
            self.update3 = UpdateBlock(c1, spec.update, rescale=2)
            self.update2 = UpdateBlock(c0, spec.update, rescale=4)
        fields3 = 3 * spec.fields
        self.comb_block = nn.Sequential(
            conv(fields3, 2 * fields3, spec.comb_kernel),
            PReLUInPlace(2 * fields3),
            conv(2 * fields3, 3, spec.comb_kernel),
        )
        self.correlation_mode: CorrelationMode = "auto"
        self.correlation_budget_bytes = 1 << 30

    def set_mps_safe_warp(self, enabled: bool) -> None:
        """Avoid `grid_sample(padding_mode="border")`, which some MPS builds get wrong."""
        for decoder in (self.decoder3, self.decoder2, self.decoder1):
            decoder.mps_safe = enabled

    @property
    def _mps_safe(self) -> bool:
        return self.decoder1.mps_safe

    def _levels(self) -> list[tuple[int, nn.Module, nn.Module | None]]:
        if self.spec.high_res_updates:
            return [
                (1, self.update4, None),
                (2, self.update3_low, self.update3_high),
                (4, self.update2_low, self.update2_high),
            ]
        return [(1, self.update4, None), (2, self.update3, None), (4, self.update2, None)]

    def encode(
        self,
        img0: torch.Tensor,
        img1: torch.Tensor,
        scale_factor: float = 1.0,
        correlation: CorrelationMode | None = None,
        correlation_budget_bytes: int | None = None,
        time_steps: int = 1,
    ) -> PairFeatures:
        """Run both encoders and prepare the correlation for a batch of frame pairs (values in [0, 1]).

        With the 'auto' correlation, precomputed volumes may take up to `correlation_budget_bytes`
        (default: the model's `correlation_budget_bytes`); `time_steps`, the number of time steps that will
        be decoded from the result, tells whether precomputing them pays off.
        """
        _check_pair(img0, img1, scale_factor)
        dtype = self.comb_block[0].weight.dtype
        img0, img1 = img0.float(), img1.float()
        mean = torch.cat([img0, img1], dim=2).mean(dim=(1, 2, 3), keepdim=True)
        frames = torch.cat([img0, img1]) - mean.repeat(2, 1, 1, 1)
        work = (frames if scale_factor == 1.0 else resize(frames, scale_factor)).to(dtype)
        if img0[0].numel() > SEPARATE_ENCODING_VALUES:
            # Large frames are encoded one at a time: the same result (instance norm is per sample) at
            # half the peak memory.
            halves = work.chunk(2)
            fmap0, fmap1 = (self.feat_encoder(half) for half in halves)
            context = [torch.cat(level) for level in zip(*(self.encoder(half) for half in halves), strict=True)]
        else:
            fmap0, fmap1 = self.feat_encoder(work).chunk(2)
            context = self.encoder(work)
        budget = self.correlation_budget_bytes if correlation_budget_bytes is None else correlation_budget_bytes
        lookup = build_correlation(fmap0, fmap1, correlation or self.correlation_mode, budget, time_steps)
        h, w = fmap0.shape[-2:]
        ys, xs = torch.meshgrid(
            torch.arange(h, device=img0.device, dtype=torch.float32),
            torch.arange(w, device=img0.device, dtype=torch.float32),
            indexing="ij",
        )
        return PairFeatures(
            mean=mean,
            frames=frames,
            context=context,
            correlation=lookup,
            grid=torch.stack([xs, ys]).unsqueeze(0),
            scale_factor=scale_factor,
        )

    def _correlate(
        self, features: PairFeatures, flow0: torch.Tensor, flow1: torch.Tensor, embt: torch.Tensor
    ) -> torch.Tensor:
        # Frame-0 pixels look into frame 1 along the t->1 flow, frame-1 pixels into frame 0 along t->0.
        centres_fwd = features.grid + flow1.float() / embt
        centres_bwd = features.grid + flow0.float() / (1.0 - embt)
        return features.correlation(centres_fwd, centres_bwd).to(self.comb_block[0].weight.dtype)

    def decode(self, features: PairFeatures, embt: torch.Tensor | float | Sequence[float]) -> torch.Tensor:
        """Frames at times `embt` (one number for every pair, or N of them, e.g. N x 1 x 1 x 1, N a
        multiple of the pair batch B; row t * B + b belongs to pair b) -> N x 3 x H x W in [0, 1]."""
        if not isinstance(embt, torch.Tensor):  # numbers can be checked without waiting for a GPU
            _check_times(embt)
        embt = torch.as_tensor(embt, dtype=torch.float32, device=features.mean.device).view(-1, 1, 1, 1)
        if embt.shape[0] == 1:  # one time for every pair
            embt = embt.expand(features.batch, 1, 1, 1)
        if embt.shape[0] % features.batch:
            raise ValueError(f"{embt.shape[0]} time steps cannot be shared among {features.batch} frame pairs")
        pair = features
        tiled = features.repeated(embt.shape[0] // features.batch)
        context, n = tiled.context, embt.shape[0]
        flow0, flow1, feature = self.decoder4(context[3][:n], context[3][n:], embt)
        decoders = [self.decoder3, self.decoder2]
        for step, (factor, low_block, high_block) in enumerate(self._levels()):
            low0 = flow0 if factor == 1 else resize(flow0, 1.0 / factor) / factor
            low1 = flow1 if factor == 1 else resize(flow1, 1.0 / factor) / factor
            corr = self._correlate(pair, low0, low1, embt)
            delta_feature, delta_motion = low_block(feature, torch.cat([low0, low1], dim=1), corr)
            feature = feature + delta_feature
            flow0 = flow0 + delta_motion[:, 0:2]
            flow1 = flow1 + delta_motion[:, 2:4]
            if high_block is not None:
                delta_feature, delta_motion = high_block(
                    feature, torch.cat([flow0, flow1], dim=1), resize(corr, factor)
                )
                feature = feature + delta_feature
                flow0 = flow0 + delta_motion[:, 0:2]
                flow1 = flow1 + delta_motion[:, 2:4]
            if step < len(decoders):
                flow0, flow1, feature = decoders[step](feature, context[2 - step], flow0, flow1)
        if pair.scale_factor == 1.0 and cpu_kernels.usable(feature, flow0, flow1, *self.decoder1.parameters()):
            return self._compose_fused(
                tiled, self.decoder1.predict_phases(feature, context[0], flow0, flow1), flow0, flow1
            )
        prediction = self.decoder1.predict(feature, context[0], flow0, flow1)
        fields = self.decoder1.split(prediction, flow0, flow1)
        del prediction  # freed before the composition's full-resolution temporaries
        return self._compose(tiled, *fields)

    def _compose(
        self,
        features: PairFeatures,
        flows0: torch.Tensor,
        flows1: torch.Tensor,
        masks: torch.Tensor,
        residuals: torch.Tensor,
    ) -> torch.Tensor:
        """Blend the warped frames of every flow field, then let comb_block correct the average."""
        flows0, flows1, masks, residuals = (x.float() for x in (flows0, flows1, masks, residuals))
        if features.scale_factor != 1.0:
            back = 1.0 / features.scale_factor
            flows0, flows1 = resize(flows0, back) * back, resize(flows1, back) * back
            masks, residuals = resize(masks, back), resize(residuals, back)
        n = self.spec.fields
        batch = features.batch
        height, width = features.frames.shape[-2:]
        candidates = flows0.new_empty(batch, n, 3, height, width)
        # One field at a time: at 4K every full-resolution temporary is hundreds of MB.
        for k in range(n):
            weight = masks[:, k : k + 1]
            flows = torch.cat([flows0[:, 2 * k : 2 * k + 2], flows1[:, 2 * k : 2 * k + 2]])
            warped0, warped1 = warp(features.frames, flows, self._mps_safe).chunk(2)
            residual = residuals[:, 3 * k : 3 * k + 3]
            # (no `out=` into the strided slice: torch.compile cannot trace that)
            candidates[:, k] = warped1.lerp_(warped0, weight).add_(residual).add_(features.mean)
        del warped0, warped1, flows0, flows1, masks, residuals
        return self._corrected(candidates, candidates.mean(dim=1))

    def _compose_fused(
        self, features: PairFeatures, phases: torch.Tensor, flow0: torch.Tensor, flow1: torch.Tensor
    ) -> torch.Tensor:
        """`_compose` in one pass of the CPU kernel, from decoder1's prediction (in phases) and the flows it
        corrects."""
        fields = self.spec.fields
        cpu_kernels.sigmoid_(phases[:, 4 * 4 * fields : 4 * 5 * fields])  # mask logits -> masks, 4 phases each
        coarse = torch.stack([flow0, flow1])
        candidates, average = cpu_kernels.compose(features.frames, phases, coarse, features.mean, fields)
        return self._corrected(candidates, average)

    def _corrected(self, candidates: torch.Tensor, average: torch.Tensor) -> torch.Tensor:
        """The average of the B x n x 3 x H x W candidates plus comb_block's correction, in [0, 1]."""
        batch, n, _, height, width = candidates.shape
        stacked = candidates.view(batch, 3 * n, height, width).to(self.comb_block[0].weight.dtype)
        if cpu_kernels.usable(stacked, average, *self.comb_block.parameters()):
            first, prelu, second = self.comb_block
            return cpu_kernels.comb(stacked, average, first, prelu.weight, second)
        correction = in_row_bands(self.comb_block, stacked, halo=self.spec.comb_kernel - 1).float()
        return (average + correction).clamp(0.0, 1.0)

    def forward(
        self, img0: torch.Tensor, img1: torch.Tensor, embt: torch.Tensor | float, scale_factor: float = 1.0
    ) -> torch.Tensor:
        """The frame at time `embt` between img0 (t = 0) and img1 (t = 1), as B x 3 x H x W."""
        if not isinstance(embt, torch.Tensor):  # checked before the encoding's work, and not again in decode
            _check_times(embt)
            embt = torch.as_tensor(embt, dtype=torch.float32)
        return self.decode(self.encode(img0, img1, scale_factor), embt)

    @torch.inference_mode()
    def interpolate(
        self, img0: torch.Tensor, img1: torch.Tensor, timesteps: Sequence[float], scale_factor: float = 1.0
    ) -> torch.Tensor:
        """Frames at several time steps of the same pair(s), encoding the pair only once.

        Returns len(timesteps) * B frames, time-major (all pairs at the first time step first).
        """
        if not len(timesteps):
            return img0.new_empty((0, 3, *img0.shape[-2:]), dtype=torch.float32)
        _check_times(timesteps)
        features = self.encode(img0, img1, scale_factor, time_steps=len(timesteps))
        embt = torch.tensor(list(timesteps), dtype=torch.float32, device=img0.device)
        embt = embt.repeat_interleave(features.batch).view(-1, 1, 1, 1)
        return self.decode(features, embt)


@functools.cache
def state_dict_shapes(spec: VariantSpec) -> dict[str, tuple[int, ...]]:
    """The checkpoint keys of a variant and their tensor shapes (the network built on the meta device, so
    no weights are allocated). Shared, so callers must not modify it."""
    with torch.device("meta"):
        model = AMT(spec)
    return {key: tuple(value.shape) for key, value in model.state_dict().items()}
