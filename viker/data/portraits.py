"""Drawn portraits and reference images for the embedded benchmark.

Each face is a tuple of discrete attributes (background, skin, face shape, hair,
eyes, glasses, hat, shirt, beard). `draw_faces` picks tuples that differ from
every other face in at least `MIN_ATTRIBUTE_DISTANCE` attributes, so that
people stay distinguishable at 32 to 48 pixels. Faces are drawn at
`SUPERSAMPLE` times the output size and downsampled, which keeps edges smooth.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance

SUPERSAMPLE = 4
MIN_ATTRIBUTE_DISTANCE = 3

BACKGROUNDS = [
    (230, 80, 70), (70, 130, 220), (90, 190, 110), (240, 200, 60), (160, 90, 200), (40, 40, 60),
    (250, 250, 245), (255, 150, 190), (60, 190, 190), (150, 110, 70), (250, 140, 40), (130, 140, 150),
]
SKIN_TONES = [(255, 224, 196), (241, 194, 150), (224, 172, 105), (198, 134, 66), (141, 85, 36), (90, 56, 37)]
HAIR_COLOURS = [
    (20, 20, 20), (110, 65, 30), (235, 205, 110), (200, 80, 30), (170, 170, 170), (250, 250, 250),
    (40, 80, 200), (230, 60, 150),
]
EYE_COLOURS = [(40, 90, 200), (40, 150, 60), (100, 60, 20), (10, 10, 10)]
SHIRT_COLOURS = [
    (200, 30, 30), (30, 60, 170), (30, 140, 60), (240, 220, 40), (120, 40, 160), (250, 250, 250),
    (20, 20, 20), (250, 120, 20), (0, 160, 170), (240, 120, 170),
]
HAT_COLOURS = [(200, 20, 20), (20, 20, 120), (30, 120, 40), (240, 240, 240)]
FACE_SHAPES = [(0.23, 0.27), (0.20, 0.30), (0.26, 0.25)]  # half-width, half-height as fractions of the canvas
N_HAIR_STYLES = 6  # short, long, bald, spiky, bun, side fringe
N_GLASSES = 3  # none, round frames, sunglasses
N_HATS = 3  # none, cap, beanie
N_BEARDS = 3  # none, full beard, moustache


@dataclass(frozen=True)
class Face:
    """Discrete attributes of one drawn face; each field indexes the lists above."""

    background: int
    skin: int
    shape: int
    hair_colour: int
    hair_style: int
    eyes: int
    glasses: int
    hat: int
    hat_colour: int
    shirt: int
    beard: int

    def distance(self, other: Face) -> int:
        """Count the attributes in which two faces differ (Hamming distance)."""
        return sum(a != b for a, b in zip(self.__dict__.values(), other.__dict__.values()))


def _random_face(rng: random.Random) -> Face:
    return Face(
        background=rng.randrange(len(BACKGROUNDS)),
        skin=rng.randrange(len(SKIN_TONES)),
        shape=rng.randrange(len(FACE_SHAPES)),
        hair_colour=rng.randrange(len(HAIR_COLOURS)),
        hair_style=rng.randrange(N_HAIR_STYLES),
        eyes=rng.randrange(len(EYE_COLOURS)),
        glasses=rng.choice([0, 0, 1, 2]),  # most people wear no glasses
        hat=rng.choice([0, 0, 1, 2]),
        hat_colour=rng.randrange(len(HAT_COLOURS)),
        shirt=rng.randrange(len(SHIRT_COLOURS)),
        beard=rng.choice([0, 0, 1, 2]),
    )


def draw_faces(n: int, rng: random.Random) -> list[Face]:
    """Pick `n` faces that pairwise differ in at least `MIN_ATTRIBUTE_DISTANCE` attributes.

    Raises:
        RuntimeError: if no such set is found within 1,000 draws per face, which
            happens only for several thousand faces.
    """
    faces: list[Face] = []
    attempts = 0
    while len(faces) < n:
        attempts += 1
        if attempts > 1000 * max(n, 1):
            raise RuntimeError(
                f"could not draw {n} faces that differ in {MIN_ATTRIBUTE_DISTANCE} attributes; "
                "ask for fewer people or reference faces"
            )
        face = _random_face(rng)
        if all(face.distance(other) >= MIN_ATTRIBUTE_DISTANCE for other in faces):
            faces.append(face)
    return faces


def render_face(face: Face, size: int) -> Image.Image:
    """Draw `face` on a `size` x `size` RGB canvas at `SUPERSAMPLE` times that size (not downsampled)."""
    s = size * SUPERSAMPLE
    img = Image.new("RGB", (s, s), BACKGROUNDS[face.background])
    draw = ImageDraw.Draw(img)
    skin = SKIN_TONES[face.skin]
    hair = HAIR_COLOURS[face.hair_colour]
    half_w, half_h = FACE_SHAPES[face.shape]
    cx, cy = 0.5 * s, 0.47 * s
    left, right = cx - half_w * s, cx + half_w * s
    top, bottom = cy - half_h * s, cy + half_h * s

    # Shoulders and shirt first, so that the head overlaps them.
    draw.ellipse([0.12 * s, 0.80 * s, 0.88 * s, 1.25 * s], fill=SHIRT_COLOURS[face.shirt])
    draw.rectangle([cx - 0.06 * s, bottom - 0.04 * s, cx + 0.06 * s, 0.86 * s], fill=skin)

    # Long hair hangs behind the head.
    if face.hair_style == 1:
        draw.rectangle([left - 0.04 * s, cy - 0.05 * s, right + 0.04 * s, bottom + 0.06 * s], fill=hair)
    draw.ellipse([left, top, right, bottom], fill=skin)
    _draw_hair(draw, face.hair_style, hair, left, right, top, cx, s)
    _draw_eyes_and_mouth(draw, face, cx, cy, half_w, s)
    if face.hat:
        _draw_hat(draw, face.hat, HAT_COLOURS[face.hat_colour], left, right, top, s)
    return img


def _draw_hair(draw: ImageDraw.ImageDraw, style: int, hair, left, right, top, cx, s) -> None:
    if style in (0, 1):  # short or long: a cap over the crown
        draw.chord([left - 0.02 * s, top - 0.03 * s, right + 0.02 * s, top + 0.28 * s], 180, 360, fill=hair)
    elif style == 3:  # spiky
        for i in range(5):
            x = left + (right - left) * (i + 0.5) / 5
            draw.polygon([(x - 0.05 * s, top + 0.08 * s), (x + 0.05 * s, top + 0.08 * s), (x, top - 0.08 * s)], fill=hair)
        draw.chord([left, top - 0.01 * s, right, top + 0.22 * s], 180, 360, fill=hair)
    elif style == 4:  # bun on top
        draw.ellipse([cx - 0.09 * s, top - 0.13 * s, cx + 0.09 * s, top + 0.05 * s], fill=hair)
        draw.chord([left, top - 0.01 * s, right, top + 0.22 * s], 180, 360, fill=hair)
    elif style == 5:  # side fringe
        draw.chord([left - 0.02 * s, top - 0.03 * s, right + 0.02 * s, top + 0.28 * s], 180, 360, fill=hair)
        draw.polygon([(left, top + 0.10 * s), (cx + 0.05 * s, top + 0.02 * s), (left, top + 0.25 * s)], fill=hair)
    # style 2 is bald: no hair


def _draw_eyes_and_mouth(draw: ImageDraw.ImageDraw, face: Face, cx, cy, half_w, s) -> None:
    eye_dx, eye_y, eye_r = 0.45 * half_w * s, cy - 0.03 * s, 0.035 * s
    for x in (cx - eye_dx, cx + eye_dx):
        draw.ellipse([x - eye_r, eye_y - eye_r, x + eye_r, eye_y + eye_r], fill=(255, 255, 255))
        draw.ellipse([x - eye_r * 0.6, eye_y - eye_r * 0.6, x + eye_r * 0.6, eye_y + eye_r * 0.6], fill=EYE_COLOURS[face.eyes])
    if face.glasses == 1:
        for x in (cx - eye_dx, cx + eye_dx):
            r = eye_r * 1.9
            draw.ellipse([x - r, eye_y - r, x + r, eye_y + r], outline=(20, 20, 20), width=max(2, s // 60))
        draw.line([cx - eye_dx + eye_r * 1.9, eye_y, cx + eye_dx - eye_r * 1.9, eye_y], fill=(20, 20, 20), width=max(2, s // 60))
    elif face.glasses == 2:
        draw.rectangle([cx - eye_dx - 0.06 * s, eye_y - 0.04 * s, cx + eye_dx + 0.06 * s, eye_y + 0.045 * s], fill=(15, 15, 15))

    mouth_y = cy + 0.13 * s
    if face.beard == 1:
        draw.chord([cx - half_w * s * 0.95, cy - 0.02 * s, cx + half_w * s * 0.95, cy + 0.30 * s], 0, 180, fill=HAIR_COLOURS[face.hair_colour])
    elif face.beard == 2:
        draw.rectangle([cx - 0.08 * s, mouth_y - 0.05 * s, cx + 0.08 * s, mouth_y - 0.02 * s], fill=HAIR_COLOURS[face.hair_colour])
    draw.arc([cx - 0.07 * s, mouth_y - 0.05 * s, cx + 0.07 * s, mouth_y + 0.03 * s], 20, 160, fill=(150, 30, 40), width=max(2, s // 50))


def _draw_hat(draw: ImageDraw.ImageDraw, kind: int, colour, left, right, top, s) -> None:
    if kind == 1:  # cap with a brim
        draw.chord([left - 0.01 * s, top - 0.06 * s, right + 0.01 * s, top + 0.22 * s], 180, 360, fill=colour)
        draw.rectangle([left - 0.02 * s, top + 0.06 * s, right + 0.12 * s, top + 0.09 * s], fill=colour)
    else:  # beanie with a band
        draw.chord([left - 0.03 * s, top - 0.10 * s, right + 0.03 * s, top + 0.26 * s], 180, 360, fill=colour)
        draw.rectangle([left - 0.03 * s, top + 0.04 * s, right + 0.03 * s, top + 0.09 * s], fill=(240, 240, 240))


def downsample(img: Image.Image, size: int) -> Image.Image:
    return img.resize((size, size), Image.Resampling.LANCZOS)


def vary_view(canvas: Image.Image, face: Face, size: int, rng: random.Random) -> Image.Image:
    """Return the same face under a new pose, light and crop: rotation, zoom, shift and brightness."""
    img = canvas.resize((2 * size, 2 * size), Image.Resampling.LANCZOS)
    s = img.width
    angle = math.radians(rng.uniform(-12, 12))
    zoom = rng.uniform(0.85, 1.15)
    dx, dy = rng.uniform(-0.08, 0.08) * s, rng.uniform(-0.08, 0.08) * s

    # PIL's affine transform maps each output pixel back to an input pixel: the inverse of
    # "rotate by `angle` and scale by `zoom` about the centre, then shift by (dx, dy)".
    c = s / 2
    a, b = math.cos(angle) / zoom, math.sin(angle) / zoom
    coefficients = (a, b, c - a * (c + dx) - b * (c + dy), -b, a, c + b * (c + dx) - a * (c + dy))
    img = img.transform((s, s), Image.Transform.AFFINE, coefficients,
                        resample=Image.Resampling.BILINEAR, fillcolor=BACKGROUNDS[face.background])
    img = ImageEnhance.Brightness(img).enhance(rng.uniform(0.7, 1.3))
    return downsample(img, size)


def render_nonperson(index: int, size: int, rng: random.Random) -> Image.Image:
    """Draw a simple scene with no person in it: a house, a tree, a flower or loose shapes."""
    s = size * SUPERSAMPLE
    sky = (rng.randrange(100, 230), rng.randrange(150, 240), rng.randrange(200, 256))
    img = Image.new("RGB", (s, s), sky)
    draw = ImageDraw.Draw(img)
    draw.rectangle([0, 0.7 * s, s, s], fill=(rng.randrange(40, 120), rng.randrange(120, 200), rng.randrange(30, 90)))
    kind = index % 4
    if kind == 0:  # house
        wall = tuple(rng.randrange(120, 250) for _ in range(3))
        draw.rectangle([0.25 * s, 0.45 * s, 0.75 * s, 0.8 * s], fill=wall)
        draw.polygon([(0.2 * s, 0.45 * s), (0.8 * s, 0.45 * s), (0.5 * s, 0.2 * s)], fill=(150, 40, 30))
        draw.rectangle([0.45 * s, 0.62 * s, 0.55 * s, 0.8 * s], fill=(90, 50, 20))
    elif kind == 1:  # tree
        draw.rectangle([0.45 * s, 0.5 * s, 0.55 * s, 0.82 * s], fill=(100, 60, 20))
        draw.ellipse([0.25 * s, 0.15 * s, 0.75 * s, 0.6 * s], fill=(30, rng.randrange(110, 180), 40))
    elif kind == 2:  # flower
        petal = tuple(rng.randrange(150, 256) for _ in range(3))
        draw.line([0.5 * s, 0.45 * s, 0.5 * s, 0.85 * s], fill=(30, 120, 30), width=s // 30)
        for k in range(6):
            a = k * math.pi / 3
            x, y = 0.5 * s + 0.12 * s * math.cos(a), 0.4 * s + 0.12 * s * math.sin(a)
            draw.ellipse([x - 0.08 * s, y - 0.08 * s, x + 0.08 * s, y + 0.08 * s], fill=petal)
        draw.ellipse([0.44 * s, 0.34 * s, 0.56 * s, 0.46 * s], fill=(250, 210, 30))
    else:  # loose shapes
        for _ in range(5):
            x, y, r = rng.uniform(0.1, 0.9) * s, rng.uniform(0.1, 0.9) * s, rng.uniform(0.05, 0.18) * s
            colour = tuple(rng.randrange(256) for _ in range(3))
            if rng.random() < 0.5:
                draw.ellipse([x - r, y - r, x + r, y + r], fill=colour)
            else:
                draw.rectangle([x - r, y - r, x + r, y + r], fill=colour)
    return downsample(img, size)


def render_noise(size: int, seed: int) -> Image.Image:
    """Uniform random RGB pixels."""
    pixels = np.random.default_rng(seed).integers(0, 256, size=(size, size, 3), dtype=np.uint8)
    return Image.fromarray(pixels, mode="RGB")


BLANK_COLOURS = [(128, 128, 128), (0, 0, 0), (255, 255, 255), (230, 220, 200)]


def render_blank(colour: tuple[int, int, int], size: int) -> Image.Image:
    return Image.new("RGB", (size, size), colour)
