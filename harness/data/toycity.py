"""``toycity``: the built-in, offline street-scene dataset (a seeded generator + its loader).

Why it exists: the whole grid must run on a laptop CPU without downloading anything, and it must
still be a *segmentation* problem in which context matters, so that a large teacher beats a small
student and CNN and Transformer students make different errors.

What the generator draws (painter's order, far to near), 10 classes::

    0 sky  1 building  2 road  3 sidewalk  4 vegetation  5 terrain  6 pole  7 sign  8 person  9 car

- A random horizon (30-60 % of the height) and vanishing point; above it sky (clear blue or
  overcast grey) with buildings standing on the horizon, below it a perspective road with
  sidewalks and terrain at the sides.
- **Same texture, different class by context**: roads and buildings are drawn by the *same* grey
  noise texture function (road below the horizon, building above it; overcast sky is grey too);
  vegetation (tree crowns, bushes) and signs share the *same* leafy green texture — a sign is
  the green rectangle/disc on top of a pole.
- **Thin structures**: poles 3-4 px wide at the default size (narrower than the CNNs' output
  stride of 8), tree trunks, lane markings.
- **Occlusion**: persons on the sidewalk and cars on the road are drawn in depth order, so near
  cars hide persons, poles and other cars; trees stand in front of buildings.
- **Lighting**: per image a global gain, a colour cast, an offset and a left-right illumination
  gradient, plus sensor noise — absolute colour alone is not enough. Car colours are random
  (often grey or green, i.e. road/building/vegetation colours).
- **Ignore (255)**: an ego-vehicle hood at the bottom of some images and random "clutter"
  objects, as Cityscapes labels its ego vehicle and unlabelled objects void.

Files (written by :func:`generate`, ``python -m harness data prepare toycity --root R``)::

    R/images/{train,val}/NNNNN.png   RGB, H x W
    R/labels/{train,val}/NNNNN.png   uint8 train ids 0..9, 255 = ignore
    R/manifest.json                  generator parameters + class pixel frequencies (written last)

Scenes are drawn on a canvas :data:`CANVAS_HEIGHT` (128) px high, where every object size below
is given, and resized to the requested size (image by area averaging, labels by nearest
neighbour), so the scene's content does not depend on the resolution.

Defaults: seed 0, 400 train + 500 val images of 64 x 128 (H x W) — about 15-20 s on one core.
The class sizes are chosen so that every class is learnable by the demo models at that size:
small classes (person, pole, sign) cover 2.5-4 % of the pixels each (the manifest records the
frequencies). The 500 val images keep the evaluation's own noise (bootstrap over images) small
next to the seed spread. Every image comes from its own ``SeedSequence([seed, split, index])``, so
the files are byte-identical for the same parameters and any single image can be regenerated alone.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from harness import IGNORE_INDEX
from harness.data.base import DATASETS, hex_palette
from harness.data.files import Pair, PairedDataset, identity_label_map, pairs_by_stem, require_dir
from harness.errors import DataError
from harness.io import atomic_write_json

log = logging.getLogger(__name__)

CLASS_NAMES = ("sky", "building", "road", "sidewalk", "vegetation", "terrain", "pole", "sign",
               "person", "car")
#: the Cityscapes colours of the same classes (sign: traffic sign), so figures read alike
PALETTE = hex_palette("4682b4 464646 804080 f423e8 6b8e23 98fb98 999999 dcdc00 dc143c 00008e")
SKY, BUILDING, ROAD, SIDEWALK, VEGETATION, TERRAIN, POLE, SIGN, PERSON, CAR = range(10)
GENERATOR_VERSION = 2
MANIFEST = "manifest.json"
SPLIT_CODES = {"train": 0, "val": 1}
PNG_LEVEL = 1  # fast zlib level: a third of the write time; noisy images barely compress anyway
CANVAS_HEIGHT = 128  # scenes are drawn this high (object sizes in its pixels), then resized


@dataclass(frozen=True)
class ToyCityParams:
    """The generator's parameters; all of them are recorded in the manifest."""

    seed: int = 0
    num_train: int = 400
    num_val: int = 500
    height: int = 64
    width: int = 128

    def validate(self) -> None:
        if self.num_train < 1 or self.num_val < 1:
            raise DataError("toycity needs at least 1 train and 1 val image, got "
                            f"{self.num_train}/{self.num_val}")
        if self.height < 32 or self.width < 64:
            raise DataError(f"toycity images must be at least 32 x 64 (H x W), got {self.height} x "
                            f"{self.width}")


# ---- textures: (H, W, 3) float arrays in 0..255 --------------------------------------------------
def _smooth_noise(rng: np.random.Generator, h: int, w: int, cell: float) -> np.ndarray:
    """Zero-mean, unit-std noise with features about ``cell`` px large (H, W)."""
    small = rng.standard_normal((max(2, int(h / cell) + 2), max(2, int(w / cell) + 2))).astype(np.float32)
    return np.asarray(Image.fromarray(small, mode="F").resize((w, h), Image.BILINEAR))


def grey_texture(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Grey fine-grained noise — used for *both* road and building (context decides)."""
    base = rng.uniform(85, 165)
    tint = rng.uniform(-6, 6, size=3)
    lum = base + 14 * rng.standard_normal((h, w)) + 10 * _smooth_noise(rng, h, w, 6)
    return lum[..., None] + tint


def green_texture(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Leafy green blotches — used for *both* vegetation and signs (context decides)."""
    base = np.array([rng.uniform(40, 95), rng.uniform(100, 165), rng.uniform(30, 85)])
    leaf = 1 + 0.25 * _smooth_noise(rng, h, w, 3) + 0.08 * rng.standard_normal((h, w))
    return base * leaf[..., None]


def terrain_texture(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    base = np.array([rng.uniform(95, 145), rng.uniform(105, 150), rng.uniform(45, 85)])
    return base + (12 * _smooth_noise(rng, h, w, 12) + 5 * rng.standard_normal((h, w)))[..., None]


def sidewalk_texture(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    lum = rng.uniform(110, 180) + 6 * rng.standard_normal((h, w))
    yy, xx = np.mgrid[0:h, 0:w]
    tile = int(rng.integers(6, 11))
    lum = lum - 30 * (((yy % tile) == 0) | ((xx % tile) == 0))  # paving joints
    return lum[..., None] + rng.uniform(-5, 5, size=3)


def flat_colour(rng: np.random.Generator, h: int, w: int, rgb: np.ndarray, noise: float) -> np.ndarray:
    return rgb + noise * rng.standard_normal((h, w, 1))


def random_car_colour(rng: np.random.Generator) -> np.ndarray:
    kind = rng.random()
    if kind < 0.4:  # grey/silver/black cars look like road and building
        return np.full(3, rng.uniform(50, 210)) + rng.uniform(-8, 8, size=3)
    if kind < 0.6:  # green cars look like vegetation
        return np.array([rng.uniform(30, 90), rng.uniform(100, 170), rng.uniform(30, 90)])
    return rng.uniform(20, 235, size=3)


# ---- the scene --------------------------------------------------------------------------------
class _Canvas:
    """An image being painted and its label map; ``paint`` writes a texture where ``mask``."""

    def __init__(self, rng: np.random.Generator, h: int, w: int) -> None:
        self.rng, self.h, self.w = rng, h, w
        self.image = np.zeros((h, w, 3), np.float32)
        self.label = np.zeros((h, w), np.uint8)
        self.yy, self.xx = np.mgrid[0:h, 0:w].astype(np.float32)

    def paint(self, mask: np.ndarray, cls: int, texture: np.ndarray | Callable, *args: object) -> None:
        """Label ``mask`` as ``cls``; colour it from ``texture`` (an (H, W, 3) array, or a texture
        function ``f(rng, h, w, *args)`` evaluated only on the mask's bounding box — for speed)."""
        rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
        if len(rows) == 0:
            return
        box = np.s_[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
        sub = mask[box]
        if callable(texture):
            texture = texture(self.rng, sub.shape[0], sub.shape[1], *args)
        else:
            texture = texture[box]
        self.image[box][sub] = texture[sub]
        self.label[box][sub] = cls

    def rect(self, x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
        return (self.xx >= x0) & (self.xx < x1) & (self.yy >= y0) & (self.yy < y1)

    def ellipse(self, cx: float, cy: float, rx: float, ry: float) -> np.ndarray:
        return ((self.xx - cx) / max(rx, 0.5)) ** 2 + ((self.yy - cy) / max(ry, 0.5)) ** 2 <= 1


@dataclass
class _Ground:
    """The ground of a scene: depth ``t`` (0 at the horizon, 1 at the bottom row) and regions."""

    horizon: float
    t: np.ndarray
    below: np.ndarray
    road: np.ndarray
    sidewalk: np.ndarray

    def point(self, cv: _Canvas, region: np.ndarray) -> tuple[float, float, float] | None:
        """A random (x, y, depth t) inside ``region`` below the horizon."""
        ys, xs = np.nonzero(region & (cv.yy > self.horizon + 2))
        if len(ys) == 0:
            return None
        i = int(cv.rng.integers(len(ys)))
        return float(xs[i]), float(ys[i]), float(self.t[ys[i], xs[i]])


def render_scene(rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """One street scene: RGB uint8 (H, W, 3) and train ids uint8 (H, W), 255 = ignore.

    Painted back to front; every step draws from ``rng`` in a fixed order, so a seed is a scene.
    """
    cv = _Canvas(rng, h, w)
    horizon = float(rng.uniform(0.3, 0.6) * h)
    _paint_sky(cv, horizon)
    _paint_buildings(cv, horizon)
    ground = _paint_ground(cv, horizon)
    _paint_vegetation(cv, ground)
    _paint_things(cv, ground)
    _paint_void(cv, horizon)
    return _light(cv), cv.label


def _paint_sky(cv: _Canvas, horizon: float) -> None:
    """Clear (blue gradient, clouds) or overcast (flat grey, the colour of road and building)."""
    rng, h, w, yy = cv.rng, cv.h, cv.w, cv.yy
    if rng.random() < 0.35:
        grey = rng.uniform(150, 215)
        sky = flat_colour(rng, h, w, np.full(3, grey) + rng.uniform(-5, 5, 3), 2.0)
        sky = sky - (10 * (1 - yy / h))[..., None]
    else:
        top, low = np.array([60, 110, 200.0]), np.array([175, 205, 235.0])
        frac = np.clip(yy / max(horizon, 1), 0, 1)[..., None]
        sky = top * (1 - frac) + low * frac + 3 * rng.standard_normal((h, w, 1))
        for _ in range(int(rng.integers(0, 4))):
            cx, cy = rng.uniform(0, w), rng.uniform(0, horizon)
            cloud = cv.ellipse(cx, cy, rng.uniform(8, 30), rng.uniform(3, 8))
            sky[cloud] = sky[cloud] * 0.3 + 0.7 * rng.uniform(215, 245)
    cv.paint(yy < horizon, SKY, sky)


def _paint_buildings(cv: _Canvas, horizon: float) -> None:
    """Buildings stand on the horizon: grey noise (the road's texture), some with windows."""
    rng, xx, yy = cv.rng, cv.xx, cv.yy
    x = -rng.uniform(0, 30)
    while x < cv.w:
        bw = rng.uniform(18, 70)
        if rng.random() < 0.75:
            top = horizon - rng.uniform(0.25, 1.0) * horizon
            body = cv.rect(x, top, x + bw, horizon)
            cv.paint(body, BUILDING, grey_texture)
            if rng.random() < 0.5:
                gap, size = rng.uniform(5, 9), rng.uniform(2, 4)
                win_lum = rng.choice([rng.uniform(20, 60), rng.uniform(180, 230)])
                windows = body & (((xx - x) % gap) > gap - size) & (((yy - top) % gap) > gap - size)
                cv.paint(windows, BUILDING, flat_colour, np.full(3, win_lum), 4.0)
        x += bw


def _paint_ground(cv: _Canvas, horizon: float) -> _Ground:
    """Perspective road (with a dashed centre line, labelled road), sidewalks and terrain."""
    rng, h, w, xx, yy = cv.rng, cv.h, cv.w, cv.xx, cv.yy
    t = np.clip((yy - horizon) / max(h - horizon, 1), 0, 1)
    below = yy >= horizon
    centre = rng.uniform(0.3, 0.7) * w + t * rng.uniform(-0.3, 0.3) * w
    road_half = w * (0.02 + t * rng.uniform(0.25, 0.5))
    side_l = w * (0.01 + t * rng.uniform(0.05, 0.25))
    side_r = w * (0.01 + t * rng.uniform(0.05, 0.25))
    dx = xx - centre
    road = below & (np.abs(dx) < road_half)
    sidewalk = below & ~road & (dx > -road_half - side_l) & (dx < road_half + side_r)
    cv.paint(below, TERRAIN, terrain_texture)
    cv.paint(sidewalk, SIDEWALK, sidewalk_texture)
    cv.paint(road, ROAD, grey_texture)
    if rng.random() < 0.6:
        dash = np.sin(6.0 / np.maximum(t, 0.02)) > 0.2
        marking = road & (np.abs(dx) < 0.5 + 1.5 * t) & dash
        cv.paint(marking, ROAD, flat_colour, np.full(3, rng.uniform(190, 240)), 4.0)
    return _Ground(horizon, t, below, road, sidewalk)


def _paint_vegetation(cv: _Canvas, ground: _Ground) -> None:
    """Trees (in front of buildings) and bushes: the shared green texture, context = ground/trunk."""
    rng, below, road = cv.rng, ground.below, ground.road
    for _ in range(int(rng.integers(1, 5))):
        spot = ground.point(cv, below & ~road)
        if spot is None:
            break
        bx, by, depth = spot
        size = 4 + 22 * depth
        trunk_top = by - size * rng.uniform(1.2, 2.2)
        trunk = cv.rect(bx - (0.5 + depth), trunk_top, bx + 0.5 + depth, by)
        bark = np.array([rng.uniform(70, 110), rng.uniform(50, 75), 35.0])
        cv.paint(trunk, VEGETATION, flat_colour, bark, 6)
        crown = np.zeros((cv.h, cv.w), bool)
        for _ in range(int(rng.integers(2, 5))):
            crown |= cv.ellipse(bx + rng.uniform(-0.6, 0.6) * size, trunk_top + rng.uniform(-0.4, 0.4) * size,
                                size * rng.uniform(0.5, 0.9), size * rng.uniform(0.4, 0.8))
        cv.paint(crown, VEGETATION, green_texture)
    for _ in range(int(rng.integers(0, 4))):
        spot = ground.point(cv, below & ~road & ~ground.sidewalk)
        if spot is None:
            break
        bx, by, depth = spot
        size = 3 + 14 * depth
        cv.paint(cv.ellipse(bx, by - 0.4 * size, size, 0.6 * size) & below, VEGETATION, green_texture)


def _paint_things(cv: _Canvas, ground: _Ground) -> None:
    """Near things in depth order: poles (+ signs) and persons on the sidewalk, cars on the road."""
    rng = cv.rng
    counts = (("pole", ground.sidewalk, rng.integers(1, 6)), ("person", ground.sidewalk, rng.integers(1, 7)),
              ("car", ground.road, rng.integers(1, 5)))
    things: list[tuple[float, str, float, float]] = []
    for kind, region, count in counts:
        for _ in range(int(count)):
            spot = ground.point(cv, region)
            if spot is not None:
                things.append((spot[1], kind, spot[0], spot[2]))
    paint = {"pole": _paint_pole, "person": _paint_person, "car": _paint_car}
    for by, kind, bx, depth in sorted(things):
        paint[kind](cv, bx, by, depth, ground.horizon)


def _paint_pole(cv: _Canvas, bx: float, by: float, depth: float, horizon: float) -> None:
    """A pole 6-9 canvas px wide, often carrying a sign (the green texture: context decides the
    class)."""
    rng = cv.rng
    width = 6 + round(3 * depth * rng.uniform(0.5, 1.0))
    top = max(2.0, by - (by - horizon) * rng.uniform(1.4, 3.0) - 6)
    x0 = round(bx)
    cv.paint(cv.rect(x0, top, x0 + width, by), POLE, flat_colour, np.full(3, rng.uniform(60, 140)), 5)
    if rng.random() < 0.85:
        sw, sh = 5 + 12 * depth * rng.uniform(0.7, 1.3), 5 + 11 * depth * rng.uniform(0.7, 1.3)
        cx = x0 + width / 2
        if rng.random() < 0.6:
            shape = cv.rect(cx - sw, top - sh, cx + sw, top + sh)
        else:
            shape = cv.ellipse(cx, top, sw, sw)
        cv.paint(shape, SIGN, green_texture)


def _paint_person(cv: _Canvas, bx: float, by: float, depth: float, horizon: float) -> None:
    rng = cv.rng
    ph = 14 + 40 * depth * rng.uniform(0.8, 1.2)
    pw = ph / rng.uniform(2.2, 3.0)
    clothes = rng.uniform(20, 235, size=3)
    legs = (cv.rect(bx - pw / 2, by - 0.45 * ph, bx - pw / 8, by)
            | cv.rect(bx + pw / 8, by - 0.45 * ph, bx + pw / 2, by))
    cv.paint(legs, PERSON, flat_colour, rng.uniform(20, 90, size=3), 5)
    cv.paint(cv.ellipse(bx, by - 0.62 * ph, pw / 2, 0.2 * ph), PERSON, flat_colour, clothes, 6)
    skin = np.array([rng.uniform(120, 230), rng.uniform(90, 180), rng.uniform(60, 150)])
    cv.paint(cv.ellipse(bx, by - 0.88 * ph, pw / 3, 0.1 * ph + 0.5), PERSON, flat_colour, skin, 5)


def _paint_car(cv: _Canvas, bx: float, by: float, depth: float, horizon: float) -> None:
    rng = cv.rng
    cw = 8 + 70 * depth * rng.uniform(0.8, 1.2)
    ch = cw * rng.uniform(0.35, 0.5)
    colour = random_car_colour(rng)
    body = cv.rect(bx - cw / 2, by - 0.6 * ch, bx + cw / 2, by - 0.12 * ch)
    cabin = cv.rect(bx - cw * 0.32, by - ch, bx + cw * 0.3, by - 0.55 * ch)
    cv.paint(body | cabin, CAR, flat_colour, colour, 6)
    glass = cv.rect(bx - cw * 0.28, by - 0.93 * ch, bx + cw * 0.26, by - 0.62 * ch)
    cv.paint(glass, CAR, flat_colour, np.array([40, 55, 75.0]) * rng.uniform(0.6, 1.6), 5)
    wheel_r = max(1.0, 0.16 * ch)
    wheels = (cv.ellipse(bx - cw * 0.3, by - wheel_r, wheel_r, wheel_r)
              | cv.ellipse(bx + cw * 0.3, by - wheel_r, wheel_r, wheel_r))
    cv.paint(wheels, CAR, flat_colour, np.full(3, 20.0), 4)


def _paint_void(cv: _Canvas, horizon: float) -> None:
    """Random clutter objects and an ego-vehicle hood, labelled ignore."""
    rng, h, w = cv.rng, cv.h, cv.w
    for _ in range(int(rng.random() < 0.4) * int(rng.integers(1, 3))):
        cx, cy = rng.uniform(0, w), rng.uniform(horizon * 0.5, h)
        clutter = cv.ellipse(cx, cy, rng.uniform(2, 9), rng.uniform(2, 9))
        cv.paint(clutter, IGNORE_INDEX, flat_colour, rng.uniform(0, 255, size=3), 20)
    if rng.random() < 0.3:
        hood_h, bulge = rng.uniform(0.04, 0.1) * h, rng.uniform(0.02, 0.06) * h
        hood = cv.yy > h - hood_h - bulge * (1 - ((cv.xx - w / 2) / (w / 2)) ** 2)
        cv.paint(hood, IGNORE_INDEX, flat_colour, rng.uniform(10, 80, size=3), 4)


def _light(cv: _Canvas) -> np.ndarray:
    """Lighting (gain, colour cast, offset, a left-right gradient), then sensor noise: uint8 RGB."""
    rng = cv.rng
    gain = rng.uniform(0.65, 1.35) * rng.uniform(0.85, 1.15, size=3)
    ramp = 1 + rng.uniform(-0.2, 0.2) * (cv.xx / cv.w - 0.5)[..., None]
    image = cv.image * gain * ramp + rng.uniform(-15, 15) + 3 * rng.standard_normal((cv.h, cv.w, 1))
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def render_pair(rng: np.random.Generator, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """One scene at ``height x width``: drawn by :func:`render_scene` on a canvas
    :data:`CANVAS_HEIGHT` px high with the same aspect ratio (object sizes are canvas pixels),
    then resized — the image by area averaging (a camera integrates over a pixel), the labels by
    nearest neighbour. At the canvas size nothing is resized."""
    canvas_w = max(1, round(CANVAS_HEIGHT * width / height))
    image, label = render_scene(rng, CANVAS_HEIGHT, canvas_w)
    if (height, width) != (CANVAS_HEIGHT, canvas_w):
        image = np.asarray(Image.fromarray(image, mode="RGB").resize((width, height), Image.BOX))
        label = np.asarray(Image.fromarray(label, mode="L").resize((width, height), Image.NEAREST))
    return image, label


def image_rng(seed: int, split: str, index: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, SPLIT_CODES[split], index]))


# ---- writing the folder -----------------------------------------------------------------------
def _write_split(folder: Path, split: str, count: int, params: ToyCityParams) -> np.ndarray:
    """Write ``count`` pairs; return the pixel count per label value (256,)."""
    (folder / "images" / split).mkdir(parents=True)
    (folder / "labels" / split).mkdir(parents=True)
    counts = np.zeros(256, np.int64)
    for index in range(count):
        image, label = render_pair(image_rng(params.seed, split, index), params.height, params.width)
        name = f"{index:05d}.png"
        Image.fromarray(image, mode="RGB").save(folder / "images" / split / name, compress_level=PNG_LEVEL)
        Image.fromarray(label, mode="L").save(folder / "labels" / split / name, compress_level=PNG_LEVEL)
        counts += np.bincount(label.ravel(), minlength=256)
    return counts


def _frequencies(counts: np.ndarray) -> dict[str, float]:
    total = counts.sum()
    freq = {name: round(float(counts[i] / total), 5) for i, name in enumerate(CLASS_NAMES)}
    freq["ignore"] = round(float(counts[IGNORE_INDEX] / total), 5)
    return freq


def read_manifest(root: Path) -> dict | None:
    path = root / MANIFEST
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise DataError(f"toycity manifest {path} is unreadable ({err}); delete {root} and run "
                        "`python -m harness data prepare toycity --root ...` again") from None


def generate(root: str | Path, params: ToyCityParams | None = None) -> Path:
    """Write the dataset to ``root`` (if not already there with the same parameters); return it.

    ``params=None`` accepts an existing toycity folder whatever its parameters, and generates the
    defaults otherwise; explicit ``params`` must match an existing folder's manifest.

    The files are written to a temporary sibling folder and renamed into place, with the manifest
    written last, so a killed or concurrent run never leaves a half-written dataset at ``root``.
    """
    root = Path(root)
    manifest = read_manifest(root)
    if manifest is not None and manifest.get("version") != GENERATOR_VERSION:
        raise DataError(f"{root} holds toycity drawn by generator version {manifest.get('version')}, "
                        f"this code draws version {GENERATOR_VERSION}; delete {root} (it is "
                        "generated again on first use) or choose another --root")
    if manifest is not None and params is None:
        return root  # no parameters asked for: whatever is there is fine
    params = params or ToyCityParams()
    params.validate()
    if manifest is not None:
        if manifest.get("params") != asdict(params):
            raise DataError(
                f"{root} already holds toycity generated with {manifest.get('params')}, "
                f"not {asdict(params)}; delete it or choose another --root"
            )
        return root
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise DataError(f"{root} exists but is not a toycity folder (no {MANIFEST}); "
                        "delete it or choose another --root")
    root.parent.mkdir(parents=True, exist_ok=True)
    start, start_cpu = time.perf_counter(), time.process_time()
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.", suffix=".tmp", dir=root.parent))
    try:
        counts = {split: _write_split(tmp, split, n, params)
                  for split, n in (("train", params.num_train), ("val", params.num_val))}
        seconds = time.perf_counter() - start
        atomic_write_json(tmp / MANIFEST, {
            "name": "toycity", "version": GENERATOR_VERSION, "params": asdict(params),
            "classes": list(CLASS_NAMES), "ignore_index": IGNORE_INDEX,
            "class_pixel_frequency": {split: _frequencies(c) for split, c in counts.items()},
            "generation_seconds": round(seconds, 2),
            "generation_cpu_seconds": round(time.process_time() - start_cpu, 2),
        })
        if root.is_dir():
            root.rmdir()  # empty (checked above)
        os.rename(tmp, root)
    except OSError:
        if read_manifest(root) is None:  # not a concurrent generator that finished first
            raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    log.info("generated toycity (%d train + %d val, %dx%d) in %s in %.1f s", params.num_train,
             params.num_val, params.height, params.width, root, time.perf_counter() - start)
    return root


def nearest_colour_miou(root: str | Path, max_images: int | None = None) -> float:
    """mIoU (percent) on val of a per-pixel nearest-class-mean-colour classifier fit on train.

    The sanity check that the dataset needs context: colour alone must score low.
    """
    root = Path(root)
    sums, counts = np.zeros((len(CLASS_NAMES), 3)), np.zeros(len(CLASS_NAMES))
    for image_path, label_path in ToyCity.find_pairs(root, "train")[:max_images]:
        image, label = ToyCity.load_pair(image_path, label_path)
        valid = label != IGNORE_INDEX
        counts += np.bincount(label[valid], minlength=len(CLASS_NAMES))
        for channel in range(3):
            pixels = image[..., channel][valid]
            sums[:, channel] += np.bincount(label[valid], pixels, minlength=len(CLASS_NAMES))
    means = sums / np.maximum(counts, 1)[:, None]
    k = len(CLASS_NAMES)
    confusion = np.zeros((k, k), np.int64)
    for image_path, label_path in ToyCity.find_pairs(root, "val")[:max_images]:
        image, label = ToyCity.load_pair(image_path, label_path)
        valid = label != IGNORE_INDEX
        pixels = image[valid].astype(np.float64)
        predicted = ((pixels[:, None, :] - means[None]) ** 2).sum(-1).argmin(1)
        confusion += np.bincount(label[valid].astype(np.int64) * k + predicted, minlength=k * k).reshape(k, k)
    iou = np.diag(confusion) / np.maximum(confusion.sum(0) + confusion.sum(1) - np.diag(confusion), 1)
    return float(100 * iou.mean())


@DATASETS.register("toycity")
class ToyCity(PairedDataset):
    name = "toycity"
    num_classes = len(CLASS_NAMES)
    class_names = CLASS_NAMES
    palette = PALETTE
    pretrained_expected = False  # a from-scratch CPU demo
    layout = ("images/{train,val}/*.png + labels/{train,val}/*.png + manifest.json "
              "(made by `python -m harness data prepare toycity --root R`)")
    splits = ("train", "val")
    label_map = identity_label_map(len(CLASS_NAMES))
    label_values = f"0..{len(CLASS_NAMES) - 1} or 255"
    generated = True

    @classmethod
    def ensure(cls, root: Path) -> None:
        """Generate the default dataset at ``root`` on first use (a no-op when already there,
        a DataError when what is there was drawn by another generator version)."""
        generate(root)

    @classmethod
    def fingerprint(cls, root: Path, splits: Sequence[str]) -> dict[str, object]:
        """The generator's version and parameters (seed, sizes) from the manifest: they decide
        every image; see docs/protocol.md §Recorded runs."""
        manifest = read_manifest(root)
        if manifest is None:
            raise DataError(f"{root} holds no toycity {MANIFEST}; run `python -m harness data "
                            "prepare toycity --root ...` or point data.root at the generated folder")
        return {"generator_version": manifest.get("version"), "params": manifest.get("params")}

    @classmethod
    def planned_fingerprint(cls, root: Path, splits: Sequence[str]) -> dict[str, object]:
        """The fingerprint of the data at ``root`` once the workflow's ``data prepare`` (default
        parameters) has run: the manifest's when the folder is generated already."""
        if read_manifest(root) is not None:
            return cls.fingerprint(root, splits)
        return {"generator_version": GENERATOR_VERSION, "params": asdict(ToyCityParams())}

    @classmethod
    def generate(cls, root: Path, **options: int) -> dict:
        generate(root, ToyCityParams(**options) if options else None)
        return read_manifest(root)["params"]

    @classmethod
    def list_pairs(cls, root: Path, split: str) -> list[Pair]:
        images = require_dir(root / "images" / split, "image folder", cls.layout)
        labels = require_dir(root / "labels" / split, "label folder", cls.layout)
        return pairs_by_stem(sorted(images.glob("*.png")), labels, ".png", ".png")
