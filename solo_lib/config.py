"""One frozen configuration for SOLOv2, with named presets.

``SOLOConfig.paper_r50(num_classes)`` is the model of the SOLOv2 paper (Wang et al., "SOLOv2:
Dynamic and Fast Instance Segmentation", arXiv 2003.10152, §3 and §4; the same settings as the
authors' WXinlong/SOLO ``solov2_r50_fpn_8gpu_1x`` config). ``SOLOConfig.tiny(num_classes)`` is a
small model that a 2-core CPU trains on the sample dataset in a minute or two. Every field can be
overridden: ``SOLOConfig.tiny(4).replace(grid_sizes=(20, 12, 8))``.
"""

from __future__ import annotations

import dataclasses
import json

from solo_lib.errors import ConfigError
from solo_lib.model.registry import backbone_names

NORMALIZATIONS = ("caffe", "unit")  # caffe: keras.applications.resnet.preprocess_input; unit: x / 255


@dataclasses.dataclass(frozen=True)
class SOLOConfig:
    """Everything that defines a SOLOv2 model, its targets and its losses.

    Attributes:
        num_classes: C, the number of object classes (no background class: SOLO's category
            branch is C independent sigmoid classifiers).
        backbone: a name registered in ``solo_lib.model.registry``: ``"resnet50"``
            (``keras.applications.ResNet50``), ``"tiny"``, or one a user registers.
        backbone_weights: ``None`` (random init, the default; nothing is downloaded),
            ``"imagenet"`` (downloads, for users who can), or a path to a weights file.
        freeze_backbone: keep the backbone's weights fixed during training.
        frozen_stages: backbone stages whose weights stay fixed, mmdetection's ``frozen_stages``:
            -1 none, 0 the stem, k the stem and stages 1..k (ResNet: conv1, then conv2_x ... conv5_x;
            the tiny backbone has no separate stem, so 0 freezes nothing and k its stages 1..k).
            The reference freezes the stem and stage 1 of an ImageNet-pretrained ResNet (1).
        norm_eval: run the backbone's BatchNorm layers in inference mode while training (moving
            statistics fixed, scale and offset still trained), mmdetection's ``norm_eval``: batch
            statistics of 2 images per device are too noisy to keep ImageNet's. No effect on the
            tiny backbone (GroupNorm).
        image_scale: ``(long, short)``: every image is resized, keeping its aspect ratio, to the
            largest size whose long side is at most ``long`` and short side at most ``short``
            (enlarging or shrinking; ``mmcv.imrescale``'s rule, :func:`solo_lib.data.augment.rescale_size`),
            in training and at inference. The paper's is (1333, 800). The image is then padded to
            the canvas of its orientation (:func:`solo_lib.geometry.canvas_size`), on which the
            S x S grids lie, the same in training and at inference. None: no resizing (only for
            models saved before this setting existed; training needs a scale).
        normalization: how images are scaled before the backbone (see :data:`NORMALIZATIONS`);
            ImageNet weights need ``"caffe"``, the ResNet50 preprocessing.
        fpn_channels: channels of every FPN output.
        grid_sizes: S of each level's S x S grid. Level i reads FPN level P(i+2): P2 halved to
            stride 8, P3, P4, P5, and P6 resized to P5's size, as the reference implementations
            do (see :attr:`level_strides`); at most 5 levels.
        scale_ranges: ``(lo, hi)`` of each level: an object belongs to every level with
            ``lo <= sqrt(w * h) <= hi`` (pixels of the input canvas; ranges overlap).
        pos_scale: centre sampling: the positive region is the centre of mass +/- 0.5 *
            pos_scale * (w, h) (the paper's epsilon = 0.2).
        head_convs: stacked 3x3 conv -> GroupNorm -> ReLU blocks in each head branch.
        head_channels: channels of those convs.
        norm_groups: GroupNorm groups everywhere.
        mask_feature_channels: hidden channels of the mask feature branch (128 in the paper).
        mask_channels: E, channels of the unified mask feature and of each dynamic kernel (1x1).
        mask_stride: stride of the mask feature and of the mask targets.
        prior_prob: initial category probability; the category output bias is
            ``-log((1 - p) / p)`` (RetinaNet's prior, -log(99) for p = 0.01).
        focal_alpha: focal loss alpha.
        focal_gamma: focal loss gamma.
        mask_loss_weight: lambda in ``L = L_cate + lambda * L_mask`` (3 in the paper).
        dice_eps: epsilon in the dice denominator.
        score_thr: inference: keep (cell, class) pairs whose category score is above this
            (after point NMS; ``solo_lib.inference``).
        mask_thr: inference: a mask pixel is foreground where its probability is above this.
        nms_pre: inference: at most this many candidates, by score, enter Matrix NMS.
        update_thr: inference: keep candidates whose score after Matrix NMS is at least this.
        max_per_img: inference: at most this many instances per image.
        nms_kernel: Matrix NMS decay kernel, ``"gaussian"`` or ``"linear"`` (``solo_lib.nms``).
        mask_area_scale: inference drops masks with no more stride-4 pixels than
            ``mask_area_scale * level stride`` (the reference rule is 1.0, made for ~800 px COCO
            images; the tiny preset's 256 px images and smaller scale ranges use 0.4, the same
            ~1/2.4 as its scale ranges, or objects under ~11 px could never be detected).
        nms_sigma: gaussian kernel ``exp(-nms_sigma * iou^2)``; the code convention, in which
            2.0 equals the paper's sigma = 0.5 (it writes ``exp(-iou^2 / sigma)``).
        remat: gradient checkpointing (``solo_lib.model.remat``): training steps keep only the
            outputs of the backbone's stages, the pyramid, the head's level maps and the mask
            branch's levels for the backward pass and recompute the rest there, one piece at a
            time, and update the weights one at a time (``solo_lib.memory``). Same losses,
            gradients and BatchNorm statistics; less peak memory for about one more forward pass
            of compute (the README's Performance section measures both). Off by default; it changes no weight, so
            a model trained with it loads and predicts like any other.
    """

    num_classes: int
    backbone: str = "resnet50"
    backbone_weights: str | None = None
    freeze_backbone: bool = False
    frozen_stages: int = -1
    norm_eval: bool = False
    image_scale: tuple[int, int] | None = (1333, 800)
    normalization: str = "caffe"
    fpn_channels: int = 256
    grid_sizes: tuple[int, ...] = (40, 36, 24, 16, 12)
    scale_ranges: tuple[tuple[float, float], ...] = ((1, 96), (48, 192), (96, 384), (192, 768), (384, 2048))
    pos_scale: float = 0.2
    head_convs: int = 4
    head_channels: int = 512
    norm_groups: int = 32
    mask_feature_channels: int = 128
    mask_channels: int = 256
    mask_stride: int = 4
    prior_prob: float = 0.01
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0
    mask_loss_weight: float = 3.0
    dice_eps: float = 1e-3
    score_thr: float = 0.1
    mask_thr: float = 0.5
    nms_pre: int = 500
    update_thr: float = 0.05
    max_per_img: int = 100
    nms_kernel: str = "gaussian"
    nms_sigma: float = 2.0
    mask_area_scale: float = 1.0
    remat: bool = False

    def __post_init__(self):
        # JSON round trips turn tuples into lists; keep the dataclass hashable and comparable.
        object.__setattr__(self, "grid_sizes", tuple(int(s) for s in self.grid_sizes))
        object.__setattr__(self, "scale_ranges", tuple((float(lo), float(hi)) for lo, hi in self.scale_ranges))
        if self.image_scale is not None:
            object.__setattr__(self, "image_scale", tuple(self.image_scale))
        problems = []
        if self.image_scale is not None and not (
                len(self.image_scale) == 2 and all(isinstance(v, int) and not isinstance(v, bool) and v >= 32
                                                   for v in self.image_scale)):
            problems.append(f"image_scale must be (long, short), two integers >= 32, got {self.image_scale}")
        if not isinstance(self.frozen_stages, int) or not -1 <= self.frozen_stages <= 4:
            problems.append(f"frozen_stages must be -1 (none), 0 (the stem) or 1-4, got {self.frozen_stages!r}")
        if not isinstance(self.norm_eval, bool):
            problems.append(f"norm_eval must be True or False, got {self.norm_eval!r}")
        if self.num_classes < 1:
            problems.append(f"num_classes must be >= 1, got {self.num_classes}")
        if not 1 <= len(self.grid_sizes) == len(self.scale_ranges) <= 5:
            problems.append(f"grid_sizes and scale_ranges need one entry per level (1 to 5 levels), got "
                            f"{len(self.grid_sizes)} and {len(self.scale_ranges)}")
        if any(lo > hi or lo < 0 for lo, hi in self.scale_ranges):
            problems.append(f"each scale range needs 0 <= lo <= hi, got {self.scale_ranges}")
        if self.backbone not in backbone_names():
            problems.append(f"backbone must be one of {backbone_names()} (solo_lib.model.registry), "
                            f"got {self.backbone!r}")
        if self.normalization not in NORMALIZATIONS:
            problems.append(f"normalization must be one of {NORMALIZATIONS}, got {self.normalization!r}")
        if self.backbone_weights == "imagenet" and (self.backbone != "resnet50" or self.normalization != "caffe"):
            problems.append("ImageNet weights exist for the resnet50 backbone and need normalization='caffe'")
        for name in ("fpn_channels", "head_channels", "mask_feature_channels", "mask_channels"):
            if getattr(self, name) % self.norm_groups:
                problems.append(f"{name}={getattr(self, name)} is not divisible by norm_groups={self.norm_groups}")
        if not isinstance(self.remat, bool):
            problems.append(f"remat must be True or False, got {self.remat!r}")
        if not 0 < self.prior_prob < 1 or not 0 < self.pos_scale <= 1:
            problems.append("prior_prob must be in (0, 1) and pos_scale in (0, 1]")
        if self.mask_stride != 4:
            problems.append("mask_stride must be 4 (the mask feature branch outputs at P2's stride), "
                            f"got {self.mask_stride}")
        # Losses.
        if not 0 <= self.focal_alpha <= 1 or self.focal_gamma < 0:
            problems.append("focal_alpha must be in [0, 1] and focal_gamma >= 0, "
                            f"got {self.focal_alpha} and {self.focal_gamma}")
        if self.mask_loss_weight < 0 or self.dice_eps <= 0:
            problems.append("mask_loss_weight must be >= 0 and dice_eps > 0, "
                            f"got {self.mask_loss_weight} and {self.dice_eps}")
        # Inference (solo_lib.inference, solo_lib.nms; -1 disables a limit or a threshold, as in matrix_nms).
        if not 0 <= self.score_thr < 1 or not 0 < self.mask_thr < 1:
            problems.append("score_thr must be in [0, 1) and mask_thr in (0, 1), "
                            f"got {self.score_thr} and {self.mask_thr}")
        for name in ("nms_pre", "max_per_img"):
            value = getattr(self, name)
            if value != -1 and value < 1:
                problems.append(f"{name} must be >= 1, or -1 for no limit, got {value}")
        if self.update_thr >= 1:
            problems.append(f"update_thr must be below 1 (or -1 to keep every decayed score), got {self.update_thr}")
        if self.nms_kernel not in ("gaussian", "linear"):
            problems.append(f"nms_kernel must be 'gaussian' or 'linear', got {self.nms_kernel!r}")
        if self.nms_sigma < 0 or self.mask_area_scale < 0:
            problems.append("nms_sigma and mask_area_scale must be >= 0, "
                            f"got {self.nms_sigma} and {self.mask_area_scale}")
        if problems:
            raise ConfigError("invalid SOLOConfig: " + "; ".join(problems))

    @property
    def num_levels(self) -> int:
        return len(self.grid_sizes)

    @property
    def level_strides(self) -> tuple[int, ...]:
        """Stride of the FPN map each level reads: P2 halved (8), P3 (8), P4 (16), P5 (32), P6 at P5's size (32)."""
        return (8, 8, 16, 32, 32)[: self.num_levels]

    @property
    def num_cells(self) -> int:
        """Sum of S^2 over levels: the rows of the flattened category and kernel outputs."""
        return sum(s * s for s in self.grid_sizes)

    @classmethod
    def paper_r50(cls, num_classes: int, **overrides) -> "SOLOConfig":
        """SOLOv2 with ResNet-50-FPN, as in the paper (arXiv 2003.10152, §4; Table 8 R50 model), at
        the paper's image scale (1333, 800). With pretrained backbone weights (``backbone_weights``
        given) the backbone is set up as the reference's: stem and stage 1 frozen
        (``frozen_stages=1``), BatchNorm in inference mode (``norm_eval=True``); from random
        weights nothing is frozen. Overrides win over both."""
        if overrides.get("backbone_weights") is not None:
            overrides = {"frozen_stages": 1, "norm_eval": True, **overrides}
        return cls(num_classes=num_classes, **overrides)

    @classmethod
    def tiny(cls, num_classes: int, **overrides) -> "SOLOConfig":
        """A small SOLOv2 for the 256-px sample dataset on a CPU, at the image scale (256, 256)
        (every image's long side 256, on a 256 x 256 canvas): a 4-stage hand-sized backbone,
        64-channel FPN, 3 levels (P2-P4), 2 thin convs per branch, E = 64. Scale ranges are the
        paper's first three divided by about 2.4 (its images are ~800 px, ours 256 px), with the
        last level open-ended so the largest objects have a home."""
        params = dict(
            num_classes=num_classes, backbone="tiny", normalization="unit", fpn_channels=64,
            grid_sizes=(24, 16, 12), scale_ranges=((1, 40), (20, 80), (40, 2048)),
            head_convs=2, head_channels=64, norm_groups=16, mask_feature_channels=32, mask_channels=64,
            mask_area_scale=0.4, image_scale=(256, 256),
        )
        params.update(overrides)
        return cls(**params)

    def replace(self, **changes) -> "SOLOConfig":
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        """Plain JSON-able dict (for ``get_config`` and saved models)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, data: dict) -> "SOLOConfig":
        """The inverse of :meth:`to_dict`. Raises ConfigError for unknown fields."""
        unknown = sorted(set(data) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ConfigError(f"invalid SOLOConfig: unknown field(s) {unknown}")
        # Saved before image_scale existed: those models ran on images at their own size.
        return cls(**{"image_scale": None, **data})
