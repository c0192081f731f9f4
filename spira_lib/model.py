"""SpiraConv v2 (Casanova et al. 2021) and how a clip's features become model inputs.

The network looks at one window of features ``[T, F]`` (T frames, F MFCC
coefficients) as a one-channel image. Every convolution spans TIME only
(kernel ``k x 1``): each coefficient track is filtered on its own, with weights
shared across coefficients, so the model learns temporal patterns of speech
(pauses, breathing, phrase rhythm) - which is what respiratory insufficiency
changes - rather than spectral shapes of a particular voice or microphone.

Output is a single LOGIT per window. Training uses ``BCEWithLogitsLoss``: it is
the same quantity as BCE on ``sigmoid(logit)`` but computed with the
log-sum-exp trick, so it neither saturates in fp32 nor overflows under fp16/bf16
autocast. ``predict_proba`` applies the sigmoid for inference.

Plain torch only: no config loading, no storage.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from spira_lib.config import FeatureConfig, ModelConfig
from spira_lib.spiraconv_cpu import cpu_convs

# (out_channels, time_kernel, time_dilation, max_pool_over_time) per conv block.
# Channels shrink 32 -> 4 so the flattened vector (4 x T' x F) stays small
# enough for a 100-unit dense layer on a few hundred recordings.
_BLOCKS: tuple[tuple[int, int, int, bool], ...] = (
    (32, 7, 2, True),
    (16, 5, 2, True),
    (8, 3, 2, True),
    (4, 2, 1, False),
)


class _Dropout(nn.Module):
    """Inverted dropout, same semantics as ``nn.Dropout``, with a cheaper mask on CPU.

    ``nn.Dropout`` draws its mask with ``bernoulli_``, which on CPU is several
    times slower than thresholding ``torch.rand``; on the first block's
    ``[B, 32, 194, 40]`` activation that alone was ~15% of a training step.
    The mask is drawn in fp32 so ``p`` is exact under bf16/fp16 autocast too.
    """

    def __init__(self, p: float) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {p}")
        self.p = float(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = torch.rand_like(x, dtype=torch.float32) >= self.p  # rand_like keeps x's memory layout
        # Scale by a Python float after masking: 1/(1-p) itself is not rounded to bf16.
        return (x * keep).mul_(1.0 / (1.0 - self.p))

    def extra_repr(self) -> str:
        return f"p={self.p}"


def _frames_after_convs(n_frames: int) -> int:
    """Time length left after the conv stack (<= 0 means the window is too short)."""
    t = n_frames
    for _, kernel, dilation, pool in _BLOCKS:
        t = t - dilation * (kernel - 1)
        if pool:
            t = t // 2
        if t <= 0:
            return 0
    return t


def min_frames() -> int:
    """Shortest window (in frames) the conv stack accepts."""
    t = 1
    while _frames_after_convs(t) < 1:
        t += 1
    return t


class WindowClassifier(nn.Module):
    """What every architecture shares: ``[B, T, F]`` windows in, one logit per window out.

    Subclasses build ``self.head`` (an MLP ending in a 1-unit linear layer) and
    implement ``trunk`` (window -> the vector the head reads). ``embed`` is the
    head's last hidden layer: what the model "sees" of a window, for drift
    tests in the model's eyes (a clip's embedding is the mean over its windows).
    """

    n_features: int
    n_frames: int
    head: nn.Sequential

    def check_input(self, x: torch.Tensor) -> None:
        if x.dim() != 3 or x.shape[1] != self.n_frames or x.shape[2] != self.n_features:
            raise ValueError(
                f"{type(self).__name__} expects input [B, {self.n_frames}, {self.n_features}], got {list(x.shape)}"
            )

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, T, F]`` -> logits ``[B]``."""
        self.check_input(x)
        return self.head(self.trunk(x)).squeeze(1)

    @torch.no_grad()
    def predict_proba(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, T, F]`` -> probability of class 1 (patient) ``[B]``; call ``eval()`` first."""
        return torch.sigmoid(self.forward(x))

    @torch.no_grad()
    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, T, F]`` -> ``[B, fc_hidden]``, always in eval mode (no dropout); the training flag is restored."""
        self.check_input(x)
        was_training = self.training
        self.eval()
        try:
            return self.head[:-1](self.trunk(x))
        finally:
            self.train(was_training)


class SpiraConvV2(WindowClassifier):
    """SpiraConv v2: time-only dilated convs + GroupNorm + Mish, then a 2-layer MLP.

    On CPU in fp32 ``trunk`` computes ``convs`` in fewer passes (spira_lib/spiraconv_cpu.py).
    """

    def __init__(self, n_features: int, n_frames: int, cfg: ModelConfig | None = None) -> None:
        super().__init__()
        cfg = cfg or ModelConfig()
        if n_features <= 0:
            raise ValueError(f"SpiraConvV2: n_features must be > 0 (got {n_features})")
        if _frames_after_convs(n_frames) < 1:
            raise ValueError(
                f"SpiraConvV2: n_frames={n_frames} is too short for the conv stack; "
                f"a window needs at least {min_frames()} frames"
            )
        self.n_features = int(n_features)
        self.n_frames = int(n_frames)
        self.input_norm = cfg.input_norm

        layers: list[nn.Module] = []
        in_ch = 1
        for out_ch, kernel, dilation, pool in _BLOCKS:
            layers.append(nn.Conv2d(in_ch, out_ch, kernel_size=(kernel, 1), dilation=(dilation, 1)))
            # GroupNorm, not BatchNorm: statistics per sample, so a small or
            # single-window batch (and eval) behaves like training.
            layers.append(nn.GroupNorm(out_ch // 2, out_ch))
            layers.append(nn.Mish())
            if pool:
                layers.append(nn.MaxPool2d(kernel_size=(2, 1)))
            layers.append(_Dropout(cfg.dropout))
            in_ch = out_ch
        # channels_last weights make every conv output channels_last, the layout
        # oneDNN convs and CPU max-pool are fastest on (~1.5x per training step).
        self.convs = nn.Sequential(*layers).to(memory_format=torch.channels_last)

        # The dense layer's input size depends on the window length; measure it
        # instead of re-deriving the arithmetic, so the two can never disagree.
        with torch.no_grad():
            was_training = self.convs.training
            self.convs.eval()
            probe = self.convs(torch.zeros(1, 1, self.n_frames, self.n_features))
            self.convs.train(was_training)
        self.flat_features = int(probe.numel())

        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(self.flat_features, cfg.fc_hidden),
            nn.Mish(),
            _Dropout(cfg.dropout),
            nn.Linear(cfg.fc_hidden, 1),
        )

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        x = apply_input_norm(x, self.input_norm)
        if x.device.type == "cpu" and x.dtype == torch.float32 and not torch.is_autocast_enabled("cpu"):
            return cpu_convs(x, self._blocks(), self.training)
        return self.convs(x.unsqueeze(1))

    def _blocks(self):
        """(conv, norm, dropout, pool?, time dilation) of each block of ``self.convs``."""
        layers = iter(self.convs)
        for _, _, dilation, pool in _BLOCKS:
            conv, norm, _mish = next(layers), next(layers), next(layers)
            if pool:
                next(layers)
            yield conv, norm, next(layers), pool, dilation


class ConvStatsNet(WindowClassifier):
    """1-D CNN over time with the coefficients as channels, then statistics pooling.

    ``[B, T, F]`` -> ``[B, F, T]``: every conv mixes all F coefficients of a few
    neighbouring frames (a TDNN / x-vector-style front), dilations grow so the
    last layer sees about 0.7 s, residual connections keep it easy to train.
    Mean and standard deviation over the window's frames of the last layer
    summarise *how often and how strongly* each learnt pattern occurs (pauses,
    inhalations, breathy onsets), independently of *where* it occurs in the
    window, which is what a respiratory cue is. The head is a small MLP.

    Costs ~20x less per window than SpiraConv v2 on CPU (one [C, T] map per
    layer instead of [C, T, F]).
    """

    def __init__(self, n_features: int, n_frames: int, cfg: ModelConfig | None = None) -> None:
        super().__init__()
        cfg = cfg or ModelConfig()
        if n_features <= 0:
            raise ValueError(f"ConvStatsNet: n_features must be > 0 (got {n_features})")
        if n_frames < 16:
            raise ValueError(f"ConvStatsNet: n_frames={n_frames} is too short; a window needs at least 16 frames")
        self.n_features = int(n_features)
        self.n_frames = int(n_frames)
        self.input_norm = cfg.input_norm
        c = cfg.channels
        self.stem = nn.Sequential(
            nn.Conv1d(n_features, c, kernel_size=5, padding=2),
            nn.GroupNorm(8, c),
            nn.Mish(),
            nn.MaxPool1d(2),  # 10 ms -> 20 ms frames: halves the cost of the rest
        )
        self.blocks = nn.ModuleList()
        for dilation in (1, 2, 4, 8):
            self.blocks.append(
                nn.Sequential(
                    nn.Conv1d(c, c, kernel_size=3, padding=dilation, dilation=dilation),
                    nn.GroupNorm(8, c),
                    nn.Mish(),
                    _Dropout(cfg.conv_dropout),
                )
            )
        self.head = nn.Sequential(
            nn.Linear(2 * c, cfg.fc_hidden),
            nn.Mish(),
            _Dropout(cfg.dropout),
            nn.Linear(cfg.fc_hidden, 1),
        )

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stem(apply_input_norm(x, self.input_norm).transpose(1, 2))
        for block in self.blocks:
            h = h + block(h)
        return torch.cat([h.mean(dim=2), h.std(dim=2, unbiased=False)], dim=1)


ARCHS = {"spiraconv_v2": SpiraConvV2, "convstats": ConvStatsNet}


def build_model(n_features: int, n_frames: int, cfg: ModelConfig | None = None) -> nn.Module:
    """The network named by ``cfg.arch``."""
    cfg = cfg or ModelConfig()
    try:
        cls = ARCHS[cfg.arch]
    except KeyError:
        raise ValueError(f"unknown model.arch {cfg.arch!r}; expected one of {', '.join(ARCHS)}") from None
    return cls(n_features, n_frames, cfg)


def apply_input_norm(x: torch.Tensor, mode: str) -> torch.Tensor:
    """``window``: standardise each coefficient over the window; ``window_mean``:
    subtract its mean only (cepstral mean normalisation: removes a fixed channel
    EQ exactly, keeps the dynamics); ``none``: raw input."""
    if mode == "window":
        return normalize_window(x)
    if mode == "window_mean":
        return x - x.mean(dim=1, keepdim=True)
    return x


def normalize_window(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Standardise each feature coefficient over the window's frames.

    Raw MFCCs differ in scale by orders of magnitude (c0 carries the energy in
    the hundreds, higher coefficients a few units). GroupNorm after the first
    conv pools statistics across all coefficients, so unnormalised c0 would
    drown the spectral-shape coefficients that carry breathiness. Per-window
    standardisation also removes channel (microphone) offsets, and it lives in
    the model so checkpoints and inference can never skip it.
    """
    mean = x.mean(dim=1, keepdim=True)
    std = x.std(dim=1, keepdim=True, unbiased=False)
    return (x - mean) / (std + eps)


def window_frames(model_cfg: ModelConfig, feat_cfg: FeatureConfig) -> int:
    """Frames per model input: one window (windowed) or the whole padded clip (padded)."""
    seconds = model_cfg.window_s if model_cfg.mode == "windowed" else model_cfg.max_duration_s
    return max(1, int(round(seconds * feat_cfg.frames_per_second)))


def step_frames(model_cfg: ModelConfig, feat_cfg: FeatureConfig) -> int:
    """Hop between consecutive windows, in frames (padded mode: one input per clip)."""
    if model_cfg.mode == "padded":
        return window_frames(model_cfg, feat_cfg)
    return max(1, int(round(model_cfg.step_s * feat_cfg.frames_per_second)))


def _check_features(features: np.ndarray) -> None:
    if features.ndim != 2:
        raise ValueError(f"features must be a 2-D [frames, features] array, got shape {features.shape}")


def n_windows(n_frames_in_clip: int, window: int, step: int) -> int:
    """How many windows ``make_windows`` cuts from a clip of this length (>= 1)."""
    if n_frames_in_clip <= window:
        return 1
    return (n_frames_in_clip - window) // step + 1


def make_windows(features: np.ndarray, window: int, step: int) -> np.ndarray:
    """``[T, F]`` -> ``[N, window, F]`` windows starting every ``step`` frames.

    Returns a read-only strided VIEW of ``features`` (no copy). A trailing part
    shorter than a full window is dropped, as in SPIRA. A clip shorter than one
    window is right-padded with zeros into a single window (a copy): such clips
    should have been quarantined, but scoring them must not crash.
    """
    _check_features(features)
    if window <= 0 or step <= 0:
        raise ValueError(f"window ({window}) and step ({step}) must be > 0")
    if features.shape[0] < window:
        return pad_or_crop(features, window)[None]
    # sliding_window_view puts the window axis last: [T-w+1, F, w].
    view = np.lib.stride_tricks.sliding_window_view(features, window, axis=0)
    return view[::step].swapaxes(1, 2)


def pad_or_crop(features: np.ndarray, n_frames: int) -> np.ndarray:
    """Padded mode: keep the first ``n_frames`` frames, zero-padding at the end if shorter."""
    _check_features(features)
    t = features.shape[0]
    if t >= n_frames:
        return features[:n_frames]
    out = np.zeros((n_frames, features.shape[1]), dtype=features.dtype)
    out[:t] = features
    return out


def clip_inputs(features: np.ndarray, model_cfg: ModelConfig, feat_cfg: FeatureConfig) -> np.ndarray:
    """All model inputs for one clip, ``[N, n_frames, F]`` (padded mode: N = 1)."""
    n = window_frames(model_cfg, feat_cfg)
    if model_cfg.mode == "padded":
        return pad_or_crop(features, n)[None]
    return make_windows(features, n, step_frames(model_cfg, feat_cfg))
