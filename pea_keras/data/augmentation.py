"""What random changes a training image gets, chosen for the data at hand.

The setting `augment` names them: `auto` (the default) chooses by dataset, `none` turns them off,
and a comma list of `flip` and `crop` asks for exactly those. Horizontal flips are off unless a dataset
is known to keep its classes when mirrored (photos of objects: CIFAR, ImageNet) or the user asks:
digits, text, arrows, anything with a handedness loses its signal when flipped. The crop follows
the image size, as established recipes do: small images (stored at less than twice the model input)
are padded by reflection and randomly cropped back, a shift of at most an eighth of the side for
photos (4 px at 32, the CIFAR recipe) and a sixteenth for anything else (2 px at 32, the shifts of
MNIST recipes); only large images get the random-resized crop of ImageNet training.
"""

import dataclasses

from pea_keras.errors import SettingError

PARTS = ("flip", "crop")
SPEC_HELP = "auto, none, or a comma list of flip and crop (flip,crop)"
# Random-resized crop of large images: the Inception/ImageNet range of area and aspect ratio.
RESIZED_SCALE = (0.08, 1.0)
RESIZED_ASPECT = (3 / 4, 4 / 3)
# Pad-and-crop of small images: this fraction of the side on each edge, for photos (flips on)
# and for anything else. Measured on 28 px digits in folders, 4 epochs at 32 px: 1/8 lost 7 points
# top-1 against no augmentation, 1/16 gained 1 (README, "Augmentation").
PAD_FRACTION_PHOTOS = 1 / 8
PAD_FRACTION = 1 / 16


def parse(spec):
    """The parts asked for (a frozenset of PARTS), or None for `auto`; SettingError when malformed."""
    text = str(spec).strip().lower()
    if text == "auto":
        return None
    if text == "none":
        return frozenset()
    parts = [p.strip() for p in text.split(",")]
    unknown = [p for p in parts if p not in PARTS]
    if unknown or not text:
        raise SettingError("augment", f"must be {SPEC_HELP}, got {spec!r}")
    return frozenset(parts)


@dataclasses.dataclass(frozen=True)
class Augmentation:
    """The augmentation of one run. `crop`: "" (none), "pad" (pad `pad` px by reflection, random
    crop back to the input size) or "resized" (random-resized crop, area `scale`, aspect `aspect`)
    or "margin" (resize to a margin over the input size, random crop). `reason`: why, for the user."""

    flip: bool = False
    crop: str = ""
    pad: int = 0
    scale: tuple | None = None
    aspect: tuple | None = None
    reason: str = ""

    def describe(self):
        """One line for the start of a run, e.g. "pad-and-crop (4 px), no flips: ..."."""
        crop = {"": "no crop", "pad": f"pad-and-crop (reflect {self.pad} px, random crop back)",
                "margin": "random crop of the image resized 1.125x"}.get(self.crop)
        if self.crop == "resized":
            crop = (f"random-resized crop (area {self.scale[0]:g}-{self.scale[1]:g}, aspect "
                    f"{self.aspect[0]:.2f}-{self.aspect[1]:.2f})")
        text = f"{crop}, {'horizontal flips' if self.flip else 'no flips'}"
        return f"{text}: {self.reason}" if self.reason else text

    def as_dict(self):
        return {**dataclasses.asdict(self), "description": self.describe()}


NONE = Augmentation(reason="augment=none")


def asked(spec, natural, never):
    """(parts asked for, or None for `auto`; the Augmentation already decided, or None): `none`
    decides at once, and so does data that is never augmented (`natural` False, `never` saying
    what it is: "the built-in digits"), for which asking for a part is a SettingError."""
    parts = parse(spec)
    if parts == frozenset():
        return parts, NONE
    if natural:
        return parts, None
    if parts:
        raise SettingError("augment", f"{spec}: {never} are not augmented; use auto or none")
    return parts, dataclasses.replace(NONE, reason=f"{never} are not augmented")


def crop_for(source_size, image_size, photos=False):
    """(crop, pad, scale, aspect) for images stored at `source_size` px (0: unknown, e.g. ImageNet's
    varied sizes) trained at `image_size`: the random-resized crop only for large images; `photos`
    (flips on) shift by PAD_FRACTION_PHOTOS of the side, anything else by PAD_FRACTION."""
    if source_size == 0 or source_size >= 2 * image_size:
        return "resized", 0, RESIZED_SCALE, RESIZED_ASPECT
    fraction = PAD_FRACTION_PHOTOS if photos else PAD_FRACTION
    return "pad", max(1, round(image_size * fraction)), None, None
