"""Preprocessing that travels with every trained model, so deployment feeds it the same numbers."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class Preprocessing:
    """uint8 pixels -> /255 -> resize/crop to ``image_size`` -> (x - mean) / std, NCHW float32.

    ``mean``/``std`` have one entry per *model* input channel. ``source_channels`` is what the data
    has (1 for grayscale); a grayscale image for a 3-channel model is repeated to 3 channels.
    ``resize_size`` (shorter side before a centre crop) is None for datasets stored at model size.
    """

    mean: tuple[float, ...]
    std: tuple[float, ...]
    image_size: int
    channels: int
    source_channels: int
    resize_size: int | None = None
    class_names: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["mean"], data["std"], data["class_names"] = list(self.mean), list(self.std), list(self.class_names)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "Preprocessing":
        return cls(
            mean=tuple(float(v) for v in data["mean"]),
            std=tuple(float(v) for v in data["std"]),
            image_size=int(data["image_size"]),
            channels=int(data["channels"]),
            source_channels=int(data.get("source_channels", data["channels"])),
            resize_size=None if data.get("resize_size") is None else int(data["resize_size"]),
            class_names=tuple(data.get("class_names", ())),
        )

    def for_channels(self, channels: int) -> "Preprocessing":
        """The same preprocessing for a model with ``channels`` inputs (grey<->RGB statistics)."""
        if channels == len(self.mean):
            return Preprocessing(self.mean, self.std, self.image_size, channels, self.source_channels,
                                 self.resize_size, self.class_names)
        if channels == 3 and len(self.mean) == 1:
            return Preprocessing(self.mean * 3, self.std * 3, self.image_size, 3, self.source_channels,
                                 self.resize_size, self.class_names)
        if channels == 1 and len(self.mean) == 3:
            mean = sum(self.mean) / 3
            std = sum(self.std) / 3
            return Preprocessing((mean,), (std,), self.image_size, 1, self.source_channels, self.resize_size,
                                 self.class_names)
        raise ValueError(f"cannot adapt preprocessing from {len(self.mean)} to {channels} channels")
