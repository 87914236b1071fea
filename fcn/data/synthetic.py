"""Synthetic street scenes in the on-disk formats of KITTI Road and semantics, CamVid, CVC KITTI, Cityscapes.

Everything here is drawn (numpy + OpenCV polygons seen by a pinhole camera over a flat street); no pixel
comes from a camera. The data exists so that the whole project, from the dataset readers on, runs offline,
in tests and in CI. Every writer labels its output with a SYNTHETIC.md file: never report scores on it as
scores on the real dataset.

Same seed -> byte-identical files. Each image has its own random generator, seeded from the run seed and
the image's identity (dataset, split, index), so an image does not change when more or fewer are written.
"""

import functools
import math
import numbers
import re
import zlib
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

import fcn
from fcn.data import camvid, cvc_kitti
from fcn.imageio import ImageFileError, write_bytes_atomic, write_png

# Class names and colours are defined once, by the readers of the formats written here.
# CamVid (SegNet) class order, the order of Scene.labels; VOID is the "unlabelled" index of both tables.
CAMVID_CLASSES = camvid.CLASS_NAMES
CVC_CLASSES = cvc_kitti.CLASS_NAMES
VOID = camvid.VOID
# RGB colour of each CVC index, void last (CVC ground truth is stored as these colours).
CVC_COLOURS = cvc_kitti.COLOURS
CAMVID_TO_CVC = (0, 1, 6, 2, 3, 5, 8, 4, 7, 9, 10, 11)  # CVC index of each CamVid index, void included

# Cityscapes label id of each CamVid index, void last. Cityscapes is finer than CamVid, so each CamVid
# class takes the Cityscapes class it mostly is: Bicyclist (rider and bicycle drawn as one) becomes rider,
# the person on it, whom Cityscapes gives an instance like pedestrians; Tree (also the grass verges here)
# becomes vegetation, not terrain; Pavement is sidewalk; SignSymbol is traffic sign; void (bins, clutter)
# becomes unlabeled, which Cityscapes ignores in training as CamVid ignores void.
CAMVID_TO_CITYSCAPES_ID = (23, 11, 17, 7, 8, 21, 20, 13, 26, 24, 25, 0)
# RGB colour of the Cityscapes label ids above (cityscapesscripts' labels.py), for *_color / semantic_rgb.
CITYSCAPES_COLOURS = {
    0: (0, 0, 0),  # unlabeled
    7: (128, 64, 128),  # road
    8: (244, 35, 232),  # sidewalk
    11: (70, 70, 70),  # building
    13: (190, 153, 153),  # fence
    17: (153, 153, 153),  # pole
    20: (220, 220, 0),  # traffic sign
    21: (107, 142, 35),  # vegetation
    23: (70, 130, 180),  # sky
    24: (220, 20, 60),  # person
    25: (255, 0, 0),  # rider
    26: (0, 0, 142),  # car
}
# Cityscapes classes with instances (person, rider, car, truck, bus, caravan, trailer, train, motorcycle,
# bicycle); the scenes draw person, rider and car, and their instances are connected regions.
CITYSCAPES_INSTANCE_CLASSES = tuple(range(24, 34))
CITYSCAPES_FOCAL_LENGTH = 2262.52  # pixels at the full 2048 x 1024 (Cityscapes camera files, fx)
KITTI_SEMANTICS_SIZE = (1242, 375)  # (W, H) of most real frames (all of the first hundred)
_CITY_NAME = re.compile(r"[a-z][a-z0-9-]*")  # no "_": it separates city, sequence and frame in names

# The four image sizes (W, H) of the real KITTI Road frames; the writer cycles through them.
KITTI_ROAD_SIZES = ((1242, 375), (1241, 376), (1238, 374), (1226, 370))
KITTI_FOCAL_LENGTH = 721.5377  # pixels at full resolution (KITTI calib P2)
KITTI_CATEGORIES = {"um": "marked", "umm": "multi", "uu": "unmarked"}
ROAD_STYLES = ("marked", "multi", "unmarked")  # 2 marked lanes, 3-4 marked lanes, 2 unmarked lanes
CAMERA_HEIGHT = 1.65  # metres above the road, as KITTI's cameras
MIN_SIZE = 32  # pixels: smaller images cannot show a street
# CamVid file numbers start here per split, so names stay unique when splits are pooled.
_CAMVID_SPLITS = {"train": 0, "val": 100_000, "test": 200_000}
_CVC_SPLITS = {"train": "Training_00", "val": "Validation_07"}

_SKY, _BUILDING, _POLE, _ROAD, _PAVEMENT, _TREE, _SIGN, _FENCE, _CAR, _PEDESTRIAN, _BICYCLIST = range(11)
# Texture strength per class (CamVid index, void last): large soft blotches and per-pixel grain, as
# fractions of the brightness. They make materials distinguishable by more than their flat colour.
_BLOTCH = np.array([0.06, 0.05, 0.03, 0.08, 0.05, 0.12, 0.02, 0.05, 0.03, 0.05, 0.05, 0.05], np.float32)
_GRAIN = np.array([0.01, 0.04, 0.03, 0.08, 0.05, 0.16, 0.02, 0.06, 0.03, 0.06, 0.06, 0.05], np.float32)
_FACADES = (
    (205, 195, 175),
    (170, 160, 150),
    (150, 85, 65),
    (225, 220, 205),
    (125, 125, 130),
    (195, 170, 120),
    (165, 130, 110),
)
_PAVEMENTS = ((160, 158, 150), (170, 158, 140), (155, 120, 110), (140, 140, 146))
_CARS = (
    (30, 30, 35),
    (205, 205, 210),
    (150, 150, 155),
    (150, 25, 25),
    (30, 50, 125),
    (80, 80, 86),
    (225, 225, 220),
    (90, 100, 60),
)


@dataclass(frozen=True, eq=False)
class Scene:
    """One synthetic street scene: the picture, what is where, and the camera that saw it."""

    image: np.ndarray  # (H, W, 3) uint8 RGB
    labels: np.ndarray  # (H, W) uint8 CamVid index in [0, 11), VOID = 11
    ego_lane: np.ndarray  # (H, W) bool: visible road of the lane the camera drives in
    focal_length: float  # pixels
    horizon_row: float  # image row of the horizon
    vanishing_col: float  # image column of the straight-ahead vanishing point


@dataclass(frozen=True)
class _Camera:
    """Pinhole camera over a flat road. The world drifts sideways with depth squared: streets curve."""

    focal: float
    col0: float  # column of the straight-ahead vanishing point
    row0: float  # row of the horizon
    bend: float  # lateral drift (m) per squared metre of depth; > 0 curves right
    height: float = CAMERA_HEIGHT

    def project(self, points) -> np.ndarray:
        """(..., 3) world points (x right, y up, z ahead; metres) -> (..., 2) image (col, row)."""
        points = np.asarray(points, dtype=np.float64)
        z = np.maximum(points[..., 2], 0.5)  # callers keep z >= 1; this only guards the division
        pixels = np.empty(points.shape[:-1] + (2,))
        pixels[..., 0] = self.col0 + self.focal * (points[..., 0] + self.bend * z * z) / z
        pixels[..., 1] = self.row0 + self.focal * (self.height - points[..., 1]) / z
        return pixels


@dataclass
class _Canvas:
    """What is being drawn: flat colours, labels, and a light map (cast shadows) applied at the end.

    Shadows are drawn into the light map when their caster is drawn; anything labelled that is drawn
    later (so nearer) resets the light, so a shadow never lies on top of an object in front of it.
    """

    image: np.ndarray
    labels: np.ndarray
    shade: np.ndarray  # (H, W) float32 light factor
    camera: _Camera
    ground: tuple[float, float]  # x range of open ground between the facades
    sun: float  # lateral shadow length per metre of height, signed; 0 = overcast
    shadow: float  # light factor inside cast shadows

    def fill(self, polygons, colour, label=None) -> None:
        """Fill world polygons ((N, K, 3), or N arrays (K, 3)); labels too unless label is None."""
        if len(polygons):
            pixels = self._pixels(polygons)
            _fill_pixels(self.image, pixels, colour)
            if label is not None:
                _fill_pixels(self.labels, pixels, label)
                _fill_pixels(self.shade, pixels, 1.0)

    def darken(self, polygons, factor) -> None:
        """Shadow world polygons on the ground (image only)."""
        if not len(polygons):
            return
        # Ground behind a facade projects onto the facade: keep shadows on the open ground.
        polygons = np.array(polygons, dtype=np.float64)
        polygons[..., 0] = np.clip(polygons[..., 0], *self.ground)
        _fill_pixels(self.shade, self._pixels(polygons), factor)

    def disc(self, centre, radius, colour, label) -> None:
        """A disc facing the camera (tree crowns, round signs, heads)."""
        col, row = self.camera.project(centre)
        pixels = radius * self.camera.focal / max(centre[2], 0.5)
        for target, value in ((self.image, colour), (self.labels, label), (self.shade, 1.0)):
            cv2.circle(
                target, (round(col * 4), round(row * 4)), round(pixels * 4), _cv_colour(value), -1, shift=2
            )

    def line(self, points, colour, label, width) -> None:
        """A polyline of world points, width in metres (bicycle frames and wheels)."""
        pixels = self._pixels([points])
        thickness = max(1, round(width * self.camera.focal / max(float(np.min(points[:, 2])), 0.5)))
        for target, value in ((self.image, colour), (self.labels, label), (self.shade, 1.0)):
            cv2.polylines(target, pixels, False, _cv_colour(value), thickness, shift=2)

    def _pixels(self, polygons) -> list[np.ndarray]:
        # Two fractional bits: edges fall between pixels, so far objects do not jump a pixel at a time.
        return list(np.round(self.camera.project(np.asarray(polygons)) * 4).astype(np.int32))


def _fill_pixels(target, pixel_polygons, value) -> None:
    cv2.fillPoly(target, pixel_polygons, _cv_colour(value), shift=2)


def _cv_colour(value):
    return tuple(float(v) for v in np.atleast_1d(value))


def _jitter(rng, rgb, spread) -> np.ndarray:
    return np.clip(np.asarray(rgb, dtype=np.float64) + rng.uniform(-spread, spread, 3), 0, 255)


# --- shapes in world coordinates (metres): x right, y up, z ahead ----------------------------------------


def _front(x0, x1, y0, y1, z) -> np.ndarray:
    """A vertical rectangle facing the camera."""
    return np.array([[x0, y0, z], [x1, y0, z], [x1, y1, z], [x0, y1, z]], dtype=np.float64)


def _side(x, y0, y1, z0, z1) -> np.ndarray:
    """A vertical rectangle along the street (car sides, windows)."""
    return np.array([[x, y0, z0], [x, y0, z1], [x, y1, z1], [x, y1, z0]], dtype=np.float64)


def _flat(x0, x1, z0, z1, y=0.0) -> np.ndarray:
    """A horizontal rectangle (dashes, roofs of cars)."""
    return np.array([[x0, y, z0], [x1, y, z0], [x1, y, z1], [x0, y, z1]], dtype=np.float64)


def _ground_strip(x0, x1, z0, z1) -> np.ndarray:
    """A long strip of ground, sampled along z so that curves stay smooth."""
    z = np.geomspace(z0, z1, 40)
    left = np.stack([np.full_like(z, x0), np.zeros_like(z), z], axis=1)
    right = np.stack([np.full_like(z, x1), np.zeros_like(z), z], axis=1)
    return np.concatenate([left, right[::-1]])


def _wall_strip(x, y0, y1, z0, z1) -> np.ndarray:
    """A long vertical band along the street (facades, hedges, fences), sampled along z."""
    z = np.geomspace(z0, z1, 24)
    bottom = np.stack([np.full_like(z, x), np.full_like(z, y0), z], axis=1)
    top = np.stack([np.full_like(z, x), np.full_like(z, y1), z], axis=1)
    return np.concatenate([bottom, top[::-1]])


def _ground_disc(x, z, radius) -> np.ndarray:
    angles = np.linspace(0, 2 * np.pi, 16, endpoint=False)
    return np.stack([x + radius * np.cos(angles), np.zeros_like(angles), z + radius * np.sin(angles)], axis=1)


def _box_faces(x0, x1, y0, y1, z0, z1) -> list[tuple[np.ndarray, float]]:
    """The faces of a box that the camera (at x = 0, above y1) sees, each with a light factor."""
    faces = [(_flat(x0, x1, z0, z1, y1), 1.1)] if y1 < CAMERA_HEIGHT else []
    if x0 > 0 or x1 < 0:  # one long side shows when the box is off to one side
        faces.append((_side(x0 if x0 > 0 else x1, y0, y1, z0, z1), 0.75))
    return [*faces, (_front(x0, x1, y0, y1, z0), 1.0)]


# --- the street -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Layout:
    """Where things are on the ground, in metres: x to the right of the camera."""

    lane_edges: np.ndarray  # lane boundaries, left to right
    road: tuple[float, float]  # kerbs (lanes plus parking strips)
    walls: tuple[float, float]  # outer edges of the sidewalks: facades, hedges, fences
    ego: int  # index of the camera's lane
    oncoming: int  # lanes [0, oncoming) carry traffic towards the camera
    marked: bool
    solid_edges: bool
    z_far: float  # where the street ends
    built: tuple[bool, bool]  # buildings (True) or vegetation on each side


def _make_layout(rng, road_style) -> _Layout:
    lanes = {"marked": 2, "multi": int(rng.integers(3, 5)), "unmarked": 2}[road_style]
    lane_width = rng.uniform(2.5, 3.1) if road_style == "unmarked" else rng.uniform(3.0, 3.7)
    oncoming = lanes // 2
    ego = int(rng.integers(oncoming, lanes))  # right-hand traffic
    # The camera drives near, not exactly on, the middle of its lane.
    edges = (np.arange(lanes + 1) - ego - 0.5) * lane_width + rng.uniform(-0.25, 0.25) * lane_width
    parking = rng.uniform(2.0, 2.5, 2) * (rng.random(2) < 0.4)
    road = (float(edges[0] - parking[0]), float(edges[-1] + parking[1]))
    sidewalks = rng.uniform(1.5, 4.5, 2)
    walls = (road[0] - float(sidewalks[0]), road[1] + float(sidewalks[1]))
    solid_edges = road_style == "multi" or bool(rng.random() < 0.5)
    z_far, built = float(rng.uniform(60, 150)), tuple(bool(b) for b in rng.random(2) < 0.75)
    return _Layout(edges, road, walls, ego, oncoming, road_style != "unmarked", solid_edges, z_far, built)


def _draw_sky(canvas, rng) -> None:
    height = canvas.labels.shape[0]
    if rng.random() < 0.3:  # overcast
        top = np.full(3, rng.uniform(150, 200))
        horizon = top + rng.uniform(10, 40)
    else:
        top = rng.uniform([40, 90, 170], [90, 140, 230])
        horizon = rng.uniform([170, 190, 215], [215, 225, 245])
    t = np.clip(np.arange(height) / max(canvas.camera.row0, 1.0), 0, 1)[:, None]
    canvas.image[:] = np.clip(top * (1 - t) + horizon * t, 0, 255).astype(np.uint8)[:, None, :]
    canvas.labels[:] = _SKY


def _draw_skyline(canvas, rng) -> None:
    """A distant tree line or city at the horizon, and grass under everything on the ground."""
    width, row0, focal = canvas.labels.shape[1], canvas.camera.row0, canvas.camera.focal
    if rng.random() < 0.5:
        cols, tops = np.linspace(0, width, 33), rng.uniform(0.002, 0.03, 33)
        label, colour = _TREE, _jitter(rng, (85, 105, 85), 15)
    else:  # flat roofs: every height is held for a stretch
        cols, tops = np.repeat(np.linspace(0, width, 17), 2)[1:-1], np.repeat(rng.uniform(0, 0.05, 16), 2)
        label, colour = _BUILDING, _jitter(rng, (140, 145, 160), 15)
    outline = np.stack([cols, row0 - focal * tops], axis=1)
    polygon = np.concatenate([[[0, row0 + 1]], outline, [[width, row0 + 1]]])
    for target, value in ((canvas.image, colour), (canvas.labels, label)):
        _fill_pixels(target, [np.round(polygon * 4).astype(np.int32)], value)
    ground = math.ceil(row0)
    canvas.image[ground:] = _jitter(rng, (95, 110, 70), 15).astype(np.uint8)
    canvas.labels[ground:] = _TREE  # grass; CamVid's "Tree" covers all vegetation


def _building_segments(rng, z_end) -> list[tuple[float, float, float, bool]]:
    """(z0, z1, height, after_gap) of the buildings along one side, near to far."""
    segments, z, after_gap = [], 1.0, False
    while z < z_end:
        if rng.random() < 0.2:
            z, after_gap = z + rng.uniform(4, 15), True
            continue
        length = rng.uniform(8, 30)
        segments.append((z, z + length, rng.uniform(6, 24), after_gap))
        z, after_gap = z + length, False
    return segments


def _windows(rng, x, z0, z1, height) -> np.ndarray:
    """(N, 4, 3) window quads on a facade: floors and bays every ~3 m."""
    floor, bay = rng.uniform(2.8, 3.6), rng.uniform(2.5, 4.0)
    y, z = (
        a.ravel()
        for a in np.meshgrid(np.arange(1.0, height - 2.0, floor), np.arange(z0 + 0.8, z1 - 1.6, bay))
    )
    dy, dz = np.array([0, 0, 0.5, 0.5]) * floor, np.array([0, 0.45, 0.45, 0]) * bay
    return np.stack([np.full((y.size, 4), x), y[:, None] + dy, z[:, None] + dz], axis=-1)


def _draw_building(canvas, rng, x_wall, side, segment) -> None:
    """One building: facade with windows, and its end wall if it stands after a gap."""
    z0, z1, height, after_gap = segment
    colour = np.asarray(_FACADES[rng.integers(len(_FACADES))]) * rng.uniform(0.8, 1.1)
    if after_gap:  # through a gap the camera sees the end wall of the next building
        canvas.fill([_front(x_wall, x_wall + side * 15, 0, height, z0)], colour * 0.7, _BUILDING)
    canvas.fill([_wall_strip(x_wall, 0, height, z0, z1)], colour, _BUILDING)
    canvas.fill([_wall_strip(x_wall, height - 0.5, height, z0, z1)], colour * 0.75)  # cornice
    windows = _windows(rng, x_wall, z0, z1, height)
    lit = rng.random(len(windows)) < 0.2
    canvas.fill(windows[~lit], _jitter(rng, (50, 58, 68), 20))
    canvas.fill(windows[lit], _jitter(rng, (150, 150, 130), 30))


def _draw_roadside(canvas, rng, layout, side) -> None:
    """Facades (far to near) or a hedge along the outer edge of one sidewalk, and their shadows."""
    x_wall, z_end, built = layout.walls[side > 0], layout.z_far + 40, layout.built[side > 0]
    segments = _building_segments(rng, z_end) if built else [(1.0, z_end, rng.uniform(0.6, 1.5), False)]
    if canvas.sun * side < 0:  # the sun is behind this side: its walls shade the street
        # Cast before drawing the walls: a wall drawn over shadowed ground then hides that shadow.
        canvas.darken(
            [_ground_strip(x_wall, x_wall - side * h * abs(canvas.sun), z0, z1) for z0, z1, h, _ in segments],
            canvas.shadow,
        )
    for segment in reversed(segments):
        if built:
            _draw_building(canvas, rng, x_wall, side, segment)
        else:
            canvas.fill(
                [_wall_strip(x_wall, 0, segment[2], 1.0, z_end)], _jitter(rng, (60, 95, 45), 15), _TREE
            )


def _draw_street_end(canvas, rng, layout) -> None:
    """Sometimes the street ends at a building across it (a T junction)."""
    if rng.random() < 0.4:
        z = layout.z_far + rng.uniform(0, 20)
        colour = np.asarray(_FACADES[rng.integers(len(_FACADES))]) * rng.uniform(0.8, 1.0)
        canvas.fill([_front(*layout.walls, 0, rng.uniform(8, 20), z)], colour, _BUILDING)


def _draw_sidewalk(canvas, rng, x_outer, x_kerb, z_far, colour) -> None:
    canvas.fill([_ground_strip(x_outer, x_kerb, 1.0, z_far)], colour, _PAVEMENT)
    tile = rng.uniform(1.0, 2.0)  # paving joints, across the walk
    joints = [_flat(x_outer, x_kerb, z, z + 0.06) for z in np.arange(1.0 + tile, min(z_far, 40.0), tile)]
    canvas.fill(joints, colour * 0.85)
    kerb = x_kerb + 0.15 * np.sign(x_outer - x_kerb)
    canvas.fill([_ground_strip(kerb, x_kerb, 1.0, z_far)], _jitter(rng, (185, 185, 180), 20))


def _draw_markings(canvas, rng, layout) -> None:
    """White lane lines, on the image only: in the labels they are road."""
    period, dash, last = rng.uniform(9, 15), rng.uniform(2.5, 5), len(layout.lane_edges) - 1
    quads = []
    for i, x in enumerate(layout.lane_edges):
        if i in (0, last) and not layout.solid_edges:
            continue
        if i in (0, last) or (i == layout.oncoming and rng.random() < 0.3):  # solid line
            starts, length = np.arange(1.0, layout.z_far, 4.0), 4.0
        else:
            starts, length = np.arange(1.0 + rng.uniform(0, period), layout.z_far, period), dash
        x = x + 0.25 * ((i == 0) - (i == last))  # edge lines sit just inside the lane
        quads += [_flat(x - 0.07, x + 0.07, z, z + length) for z in starts]
    canvas.fill(quads, _jitter(rng, (220, 220, 210), 15))


def _draw_ground(canvas, rng, layout) -> np.ndarray:
    """Sidewalks, kerbs, road and lane markings. Returns the ego lane strip as an (H, W) uint8 mask."""
    pavement = _jitter(rng, _PAVEMENTS[rng.integers(len(_PAVEMENTS))], 12)
    for side in (0, 1):
        _draw_sidewalk(canvas, rng, layout.walls[side], layout.road[side], layout.z_far, pavement)
    asphalt = rng.uniform(70, 125) + rng.uniform(-8, 8, 3)  # grey with a tint
    canvas.fill([_ground_strip(*layout.road, 1.0, layout.z_far)], asphalt, _ROAD)
    if layout.marked:
        _draw_markings(canvas, rng, layout)
    ego = np.zeros(canvas.labels.shape, np.uint8)
    lane = _ground_strip(layout.lane_edges[layout.ego], layout.lane_edges[layout.ego + 1], 1.0, layout.z_far)
    _fill_pixels(ego, canvas._pixels([lane]), 1)
    return ego


def _draw_fence(canvas, rng, x, z0, z1) -> None:
    height = rng.uniform(0.9, 1.5)
    colour = _jitter(rng, (110, 85, 60) if rng.random() < 0.5 else (120, 125, 130), 20)
    canvas.fill([_wall_strip(x, 0, height, z0, z1)], colour, _FENCE)
    posts = [_side(x, 0, height, z, z + 0.12) for z in np.arange(z0, z1, 2.0)]
    canvas.fill(posts, colour * 0.7)
    canvas.fill([_wall_strip(x, 0.8 * height, 0.9 * height, z0, z1)], colour * 0.7)  # top rail


def _draw_tree(canvas, rng, x, z) -> None:
    trunk, radius = rng.uniform(1.8, 3.0), rng.uniform(1.2, 2.8)
    canvas.darken([_ground_disc(x - canvas.sun * (trunk + radius), z, radius)], canvas.shadow)
    canvas.fill([_front(x - 0.15, x + 0.15, 0, trunk + radius, z)], _jitter(rng, (80, 65, 50), 15), _TREE)
    green = rng.uniform([40, 70, 25], [80, 120, 55])
    for offset in rng.uniform(-1, 1, (8, 3)) * [0.7 * radius, 0.5 * radius, 0.3]:
        centre = np.array([x, trunk + radius, z]) + offset
        canvas.disc(centre, radius * rng.uniform(0.45, 0.75), green * rng.uniform(0.7, 1.3), _TREE)


def _draw_pole(canvas, rng, x, z, side) -> None:
    height, colour = rng.uniform(5, 9), _jitter(rng, (120, 120, 125), 20)
    canvas.fill([_front(x - 0.09, x + 0.09, 0, height, z)], colour, _POLE)
    if rng.random() < 0.6:  # a street lamp reaches over the road
        arm = x - side * rng.uniform(1.0, 2.5)
        canvas.fill([_front(min(x, arm), max(x, arm), height - 0.15, height, z)], colour, _POLE)


def _draw_sign(canvas, rng, x, z) -> None:
    height = rng.uniform(2.0, 2.8)
    canvas.fill([_front(x - 0.04, x + 0.04, 0, height, z)], _jitter(rng, (130, 130, 135), 15), _POLE)
    colour = np.asarray(((30, 70, 170), (200, 30, 30), (230, 200, 40), (235, 235, 235))[rng.integers(4)])
    shape = rng.integers(3)
    if shape == 0:
        canvas.fill([_front(x - 0.3, x + 0.3, height, height + 0.6, z)], colour, _SIGN)
    elif shape == 1:
        canvas.disc(np.array([x, height + 0.32, z]), 0.32, colour, _SIGN)
        canvas.disc(np.array([x, height + 0.32, z]), 0.22, (235, 235, 235), _SIGN)
    else:
        canvas.fill([[[x - 0.35, height, z], [x + 0.35, height, z], [x, height + 0.6, z]]], colour, _SIGN)


def _draw_pedestrian(canvas, rng, x, z) -> None:
    height = rng.uniform(1.55, 1.9)
    legs = [_front(x - 0.2, x - 0.03, 0, 0.47 * height, z), _front(x + 0.03, x + 0.2, 0, 0.47 * height, z)]
    canvas.fill(legs, _jitter(rng, (50, 50, 70), 30), _PEDESTRIAN)
    canvas.fill(
        [_front(x - 0.23, x + 0.23, 0.45 * height, 0.83 * height, z)], rng.uniform(20, 220, 3), _PEDESTRIAN
    )
    canvas.disc(np.array([x, 0.9 * height, z]), 0.11, _jitter(rng, (190, 150, 120), 40), _PEDESTRIAN)


def _draw_bicyclist(canvas, rng, x, z) -> None:
    """Seen from behind and a little from the side: two wheels, a frame, a rider."""
    angles = np.linspace(0, 2 * np.pi, 20)
    frame = _jitter(rng, (60, 60, 60), 40)
    for zc in (z, z + 1.1):
        wheel = np.stack(
            [np.full_like(angles, x), 0.35 + 0.35 * np.sin(angles), zc + 0.35 * np.cos(angles)], 1
        )
        canvas.line(wheel, (25, 25, 25), _BICYCLIST, 0.05)
    canvas.line(
        np.array([[x, 0.35, z], [x, 0.9, z + 0.3], [x, 0.95, z + 1.0], [x, 0.35, z + 1.1]]),
        frame,
        _BICYCLIST,
        0.04,
    )
    canvas.fill([_front(x - 0.18, x + 0.18, 0.9, 1.55, z + 0.4)], rng.uniform(20, 220, 3), _BICYCLIST)
    canvas.disc(np.array([x, 1.7, z + 0.5]), 0.12, _jitter(rng, (200, 200, 200), 50), _BICYCLIST)


def _draw_bin(canvas, rng, x, z) -> None:
    """Street clutter (bins, boxes): CamVid leaves such things unlabelled, so they are void."""
    colour = _jitter(rng, (60, 80, 60) if rng.random() < 0.5 else (90, 90, 95), 20)
    for face, light in _box_faces(x - 0.3, x + 0.3, 0, 1.0, z, z + 0.6):
        canvas.fill([face], colour * light, VOID)


def _draw_car(canvas, rng, x, z, towards_camera) -> None:
    """A car whose nearest face (rear, or front for oncoming traffic) is at depth z."""
    colour = np.asarray(_CARS[rng.integers(len(_CARS))]) * rng.uniform(0.85, 1.1)
    glass = _jitter(rng, (35, 40, 50), 10)
    x0, x1 = x - 0.9, x + 0.9
    canvas.darken([_flat(x0 - 0.15, x1 + 0.15, z - 0.2, z + 4.6)], 0.5)  # the dark ground under a car
    canvas.fill(
        [_front(x0 + 0.1, x0 + 0.4, 0, 0.4, z + 0.5), _front(x1 - 0.4, x1 - 0.1, 0, 0.4, z + 0.5)],
        (20, 20, 20),
        _CAR,
    )
    for face, light in _box_faces(x0, x1, 0.3, 0.95, z, z + 4.4):
        canvas.fill([face], colour * light, _CAR)
    for face, light in _box_faces(x0 + 0.12, x1 - 0.12, 0.95, 1.45, z + 1.0, z + 3.4):
        canvas.fill([face], colour * light, _CAR)
    canvas.fill([_front(x0 + 0.25, x1 - 0.25, 1.0, 1.4, z + 1.0)], glass, _CAR)
    if x0 > 0 or x1 < 0:  # side windows on the visible side
        canvas.fill([_side(x0 if x0 > 0 else x1, 1.0, 1.4, z + 1.2, z + 3.2)], glass * 0.9, _CAR)
    lamp = (240, 240, 200) if towards_camera else (200, 20, 20)
    canvas.fill(
        [_front(x0 + 0.1, x0 + 0.4, 0.7, 0.85, z), _front(x1 - 0.4, x1 - 0.1, 0.7, 0.85, z)], lamp, _CAR
    )


def _roadside_objects(canvas, rng, layout, side) -> list:
    """(depth, draw) of trees, poles, signs, pedestrians and clutter on one sidewalk."""
    kerb, wall = layout.road[side > 0], layout.walls[side > 0]
    objects = []
    if rng.random() < 0.6:
        for z in np.arange(rng.uniform(3, 10), layout.z_far, rng.uniform(8, 18)):
            objects.append((z, functools.partial(_draw_tree, canvas, rng, kerb + side * 0.8, z)))
    for z in np.arange(rng.uniform(4, 20), layout.z_far, rng.uniform(20, 40)):
        objects.append((z, functools.partial(_draw_pole, canvas, rng, kerb + side * 0.35, z, side)))
    if rng.random() < 0.5:
        z = rng.uniform(8, 40)
        objects.append((z, functools.partial(_draw_sign, canvas, rng, kerb + side * 0.5, z)))
    if rng.random() < 0.35:
        x, z = kerb + side * rng.uniform(0.8, abs(wall - kerb) - 0.4), rng.uniform(6, 35)
        objects.append((z, functools.partial(_draw_pedestrian, canvas, rng, x, z)))
    if rng.random() < 0.25:
        x, z = wall - side * 0.5, rng.uniform(6, 30)
        objects.append((z, functools.partial(_draw_bin, canvas, rng, x, z)))
    return objects


def _traffic(canvas, rng, layout) -> list:
    """(depth, draw) of moving cars, parked cars and sometimes a cyclist."""
    edges, objects = layout.lane_edges, []
    for _ in range(int(rng.integers(0, 5))):
        lane = int(rng.integers(0, len(edges) - 1))
        x = (edges[lane] + edges[lane + 1]) / 2 + rng.uniform(-0.3, 0.3)
        z = rng.uniform(12 if lane == layout.ego else 7, 70)
        objects.append((z, functools.partial(_draw_car, canvas, rng, x, z, lane < layout.oncoming)))
    for side, kerb in ((-1, layout.road[0]), (1, layout.road[1])):
        if abs(kerb - edges[0 if side < 0 else -1]) > 1.5:  # a parking strip: park cars on it
            for z in np.arange(rng.uniform(3, 15), 60, rng.uniform(5.5, 9)):
                if rng.random() < 0.7:
                    objects.append(
                        (z, functools.partial(_draw_car, canvas, rng, kerb - side * 1.1, z, False))
                    )
    if rng.random() < 0.2:
        z = rng.uniform(8, 35)
        objects.append((z, functools.partial(_draw_bicyclist, canvas, rng, edges[-1] - 0.6, z)))
    return objects


def _draw_stray_shadows(canvas, rng, layout) -> None:
    """Shadows of things out of view (trees overhead, buildings behind): irregular dark blobs on the road."""
    if canvas.sun == 0:
        return
    for _ in range(int(rng.integers(0, 4))):
        x, z, radius = rng.uniform(*layout.road), rng.uniform(4, 30), rng.uniform(1.0, 4.0)
        blob = _ground_disc(x, z, radius)
        blob[:, [0, 2]] = [x, z] + (blob[:, [0, 2]] - [x, z]) * rng.uniform(0.5, 1.3, (len(blob), 1))
        canvas.darken([blob], canvas.shadow)


def _smooth_noise(rng, height, width, cells) -> np.ndarray:
    """(H, W) float32 noise that varies over about 1/cells of the image width."""
    rows = max(2, round(cells * height / width))
    coarse = rng.standard_normal((rows, cells)).astype(np.float32)
    return cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)


def _light_lut(rng) -> np.ndarray:
    """Per-channel tone curve of the scene: exposure, gamma and colour temperature. (256, 1, 3) uint8."""
    gain = rng.uniform(0.7, 1.25) * (1 + rng.uniform(-0.1, 0.1) * np.array([1.0, 0.0, -1.0]))
    values = np.linspace(0, 1, 256)[:, None] ** rng.uniform(0.75, 1.35) * gain * 255
    return np.clip(np.round(values), 0, 255).astype(np.uint8).reshape(256, 1, 3)


def _develop(canvas, rng) -> np.ndarray:
    """Texture, shadows, light and sensor noise, applied to the flat drawing; the labels stay as drawn."""
    height, width = canvas.labels.shape
    texture = _BLOTCH[canvas.labels] * _smooth_noise(rng, height, width, 12) + _GRAIN[
        canvas.labels
    ] * rng.standard_normal((height, width), dtype=np.float32)
    image = canvas.image * (canvas.shade * (1 + texture))[..., None]
    # Sensor noise, uniform in +-level grey values per channel: as good as Gaussian here, and 5x cheaper.
    level = int(rng.integers(2, 7))
    image += rng.integers(-level, level + 1, image.shape, dtype=np.int8)
    return cv2.LUT(np.clip(image, 0, 255).astype(np.uint8), _light_lut(rng))


def render_scene(
    rng: np.random.Generator,
    height: int,
    width: int,
    *,
    road_style: str | None = None,
    focal_length: float | None = None,
) -> Scene:
    """Draw one street scene as seen from a car.

    Args:
        rng: the scene's own generator (see scene_rng); the scene depends on nothing else.
        height, width: image size in pixels, each >= MIN_SIZE.
        road_style: "marked" (2 lanes), "multi" (3-4 lanes) or "unmarked"; None picks one at random.
        focal_length: pixels; None gives KITTI's field of view (0.581 * width).
    Returns:
        Scene: image (H, W, 3) uint8 RGB, labels (H, W) uint8 CamVid index (11 = void), ego_lane (H, W) bool.
    """
    _check_size(height, width)
    if road_style is None:
        road_style = ROAD_STYLES[rng.integers(len(ROAD_STYLES))]
    if road_style not in ROAD_STYLES:
        raise ValueError(f"road_style must be one of {ROAD_STYLES} or None, got {road_style!r}")
    focal = (
        KITTI_FOCAL_LENGTH / KITTI_ROAD_SIZES[0][0] * width if focal_length is None else float(focal_length)
    )
    if not focal > 0:
        raise ValueError(f"focal_length must be > 0, got {focal_length!r}")
    camera = _Camera(
        focal,
        width * (0.5 + rng.uniform(-0.08, 0.08)),
        height * rng.uniform(0.35, 0.5),
        rng.uniform(-0.003, 0.003),
    )
    sun = rng.choice([-1.0, 1.0]) * rng.uniform(0.3, 1.5) if rng.random() < 0.65 else 0.0
    layout = _make_layout(rng, road_style)
    canvas = _Canvas(
        np.zeros((height, width, 3), np.uint8),
        np.zeros((height, width), np.uint8),
        np.ones((height, width), np.float32),
        camera,
        layout.walls,
        sun,
        rng.uniform(0.45, 0.7),
    )
    ego = _draw_street(canvas, rng, layout)
    image = _develop(canvas, rng)
    return Scene(
        image, canvas.labels, ego.astype(bool) & (canvas.labels == _ROAD), focal, camera.row0, camera.col0
    )


def _draw_street(canvas, rng, layout) -> np.ndarray:
    """Painter's order: sky, ground, facades, fences, then objects far to near. Returns the ego lane mask."""
    _draw_sky(canvas, rng)
    _draw_skyline(canvas, rng)
    # Ground before walls: with the street curving, a near facade must hide the far road behind it.
    ego = _draw_ground(canvas, rng, layout)
    _draw_stray_shadows(canvas, rng, layout)
    _draw_street_end(canvas, rng, layout)
    for side in (-1, 1):
        _draw_roadside(canvas, rng, layout, side)
    for side in (-1, 1):
        if rng.random() < 0.35:
            z0 = rng.uniform(3, 20)
            _draw_fence(canvas, rng, layout.walls[side > 0] - side * 0.2, z0, z0 + rng.uniform(10, 40))
    objects = _roadside_objects(canvas, rng, layout, -1) + _roadside_objects(canvas, rng, layout, 1)
    for _, draw in sorted(objects + _traffic(canvas, rng, layout), key=lambda item: -item[0]):
        draw()
    return ego


def scene_rng(seed: int, *keys) -> np.random.Generator:
    """The generator of one image, from the run seed and the image's identity (strings and integers).

    The writers use keys (dataset, split, index), plus the category for KITTI Road, e.g.
    scene_rng(0, "kitti_road", "training", "um", 3).
    """
    _check_integer("seed", seed, 0)
    words = [zlib.crc32(key.encode()) if isinstance(key, str) else int(key) for key in keys]
    return np.random.default_rng([int(seed), *words])


# --- writers ----------------------------------------------------------------------------------------------


def kitti_road_size(index: int, scale: float = 1.0) -> tuple[int, int]:
    """(height, width) of the synthetic KITTI Road frame `index`: the real sizes in turn, times scale."""
    width, height = KITTI_ROAD_SIZES[index % len(KITTI_ROAD_SIZES)]
    return round(height * scale), round(width * scale)


def render_kitti_road_scene(seed: int, split: str, category: str, index: int, *, scale: float = 1.0) -> Scene:
    """The scene behind the synthetic KITTI Road files <split>/image_2/<category>_<index:06d>.png."""
    if category not in KITTI_CATEGORIES:
        raise ValueError(f"category must be one of {tuple(KITTI_CATEGORIES)}, got {category!r}")
    _check_scale(scale)
    height, width = kitti_road_size(index, scale)
    return render_scene(
        scene_rng(seed, "kitti_road", split, category, index),
        height,
        width,
        road_style=KITTI_CATEGORIES[category],
        focal_length=KITTI_FOCAL_LENGTH * scale,
    )


def write_kitti_road(
    out_dir,
    *,
    images_per_category: int = 20,
    test_images_per_category: int = 5,
    scale: float = 1.0,
    seed: int = 0,
) -> Path:
    """Write a synthetic KITTI Road set in the official layout under out_dir/data_road; returns that folder.

    Images, road (and for um, ego-lane) ground truth in the devkit colours, and calib files; images cycle
    through the four real KITTI sizes times scale.
    """
    _check_integer("images_per_category", images_per_category, 1)
    _check_integer("test_images_per_category", test_images_per_category, 0)
    _check_scale(scale)
    _check_integer("seed", seed, 0)
    root = Path(out_dir) / "data_road"
    for split, count in (("training", images_per_category), ("testing", test_images_per_category)):
        for category in KITTI_CATEGORIES:
            for index in range(count):
                _write_kitti_frame(root, split, category, index, scale, seed)
    _write_provenance(
        root,
        "KITTI Road",
        "write_kitti_road",
        seed,
        images_per_category=images_per_category,
        test_images_per_category=test_images_per_category,
        scale=scale,
    )
    return root


def _write_kitti_frame(root, split, category, index, scale, seed) -> None:
    scene = render_kitti_road_scene(seed, split, category, index, scale=scale)
    name = f"{category}_{index:06d}"
    write_png(root / split / "image_2" / f"{name}.png", scene.image)
    _write_text(root / split / "calib" / f"{name}.txt", kitti_calib_text(scene))
    if split == "training":
        # The evaluation area and blue marks get their own generator: they do not change the scene.
        rng = scene_rng(seed, "kitti_road", split, category, index, "gt")
        valid, blue = _evaluation_area(rng, scene.labels), rng.random() < 0.3
        write_png(
            root / split / "gt_image_2" / f"{category}_road_{index:06d}.png",
            kitti_road_gt(scene.labels == _ROAD, valid, blue),
        )
        if category == "um":
            write_png(
                root / split / "gt_image_2" / f"{category}_lane_{index:06d}.png",
                kitti_road_gt(scene.ego_lane, valid, blue),
            )


def kitti_road_gt(road: np.ndarray, valid: np.ndarray, mark_blue: bool = False) -> np.ndarray:
    """KITTI Road gt colours: magenta road, red not road, black outside the evaluation area.

    Args:
        road, valid: (H, W) bool.
        mark_blue: paint road outside the evaluation area blue (0, 0, 255) instead of black, as some
            official files do.
    Returns:
        (H, W, 3) uint8 RGB.
    """
    gt = np.zeros((*road.shape, 3), np.uint8)
    gt[..., 0] = np.where(valid, 255, 0)
    gt[..., 2] = np.where(road & (valid | mark_blue), 255, 0)
    return gt


def _evaluation_area(rng, labels) -> np.ndarray:
    """Where the gt counts: all but a few top rows and a few irregular blobs at the far road edges."""
    height, width = labels.shape
    valid = np.ones((height, width), np.uint8)
    valid[: max(1, round(rng.uniform(0.02, 0.08) * height))] = 0
    rows = np.flatnonzero((labels == _ROAD).any(axis=1))
    for _ in range(int(rng.integers(1, 4)) if rows.size else 0):
        row = rows[rng.integers(0, max(1, rows.size // 3))]  # the far third of the road
        cols = np.flatnonzero(labels[row] == _ROAD)
        centre = (cols[0] if rng.random() < 0.5 else cols[-1], row)
        _fill_pixels(valid, [_blob(rng, centre, rng.uniform(0.01, 0.04) * width)], 0)
    return valid.astype(bool)


def _blob(rng, centre, radius) -> np.ndarray:
    """An irregular star-shaped polygon, in pixels with 2 fractional bits."""
    angles = np.sort(rng.uniform(0, 2 * np.pi, 9))
    radii = radius * rng.uniform(0.4, 1.0, 9)
    points = np.stack([centre[0] + radii * np.cos(angles), centre[1] + radii * np.sin(angles)], axis=1)
    return np.round(points * 4).astype(np.int32)


def kitti_calib_text(scene: Scene) -> str:
    """A KITTI calib file for a scene: P0-P3, R0_rect, Tr_velo_to_cam, Tr_imu_to_velo, Tr_cam_to_road.

    Principal point at the image centre; Tr_cam_to_road puts the road plane 1.65 m below the camera with
    the pitch and yaw that make the scene's horizon and vanishing point.
    """
    height, width = scene.labels.shape
    f, cx, cy = scene.focal_length, width / 2, height / 2

    def projection(baseline):  # baseline in metres, relative to camera 0, as in KITTI
        return [f, 0, cx, baseline * f, 0, f, cy, 0, 0, 0, 1, 0]

    matrices = {
        "P0": projection(0.0),
        "P1": projection(-0.537),
        "P2": projection(0.062),
        "P3": projection(-0.471),
        "R0_rect": np.eye(3).ravel(),
        "Tr_velo_to_cam": [0, -1, 0, 0, 0, 0, -1, -0.08, 1, 0, 0, -0.27],
        "Tr_imu_to_velo": [1, 0, 0, -0.81, 0, 1, 0, 0.32, 0, 0, 1, -0.8],
        "Tr_cam_to_road": _camera_to_road(scene, cx, cy).ravel(),
    }
    return "".join(
        f"{key}: {' '.join(f'{float(v):.12e}' for v in values)}\n" for key, values in matrices.items()
    )


def _camera_to_road(scene, cx, cy) -> np.ndarray:
    """(3, 4) rigid transform from camera (x right, y down, z ahead) to road coordinates (same axes)."""
    f = scene.focal_length
    ahead = np.array([(scene.vanishing_col - cx) / f, (scene.horizon_row - cy) / f, 1.0])
    ahead /= np.linalg.norm(ahead)
    down = np.array([0.0, 1.0, 0.0]) - ahead[1] * ahead
    down /= np.linalg.norm(down)
    rotation = np.stack([np.cross(down, ahead), down, ahead])
    return np.column_stack([rotation, [0.0, -CAMERA_HEIGHT, 0.0]])


def write_camvid(
    out_dir,
    *,
    train: int = 20,
    val: int = 6,
    test: int = 6,
    height: int = 360,
    width: int = 480,
    seed: int = 0,
) -> Path:
    """Write a synthetic CamVid set in SegNet's layout under out_dir/camvid; returns that folder.

    <split>/<name>.png RGB, <split>annot/<name>.png uint8 class indices (11 = void), <split>.txt listing
    pairs as SegNet does. Names are synth_<number>.png, numbered from 0 (train), 100000 (val), 200000 (test).
    """
    counts = {"train": train, "val": val, "test": test}
    for split, count in counts.items():
        _check_integer(split, count, 1 if split == "train" else 0)
        if count > 100_000:
            raise ValueError(f"{split} must be <= 100000, got {count}")
    _check_size(height, width)
    _check_integer("seed", seed, 0)
    root = Path(out_dir) / "camvid"
    for split, count in counts.items():
        lines = []
        for index in range(count):
            scene = render_scene(scene_rng(seed, "camvid", split, index), height, width)
            name = f"synth_{_CAMVID_SPLITS[split] + index:06d}.png"
            write_png(root / split / name, scene.image)
            write_png(root / f"{split}annot" / name, scene.labels)
            lines.append(f"/SegNet/CamVid/{split}/{name} /SegNet/CamVid/{split}annot/{name}\n")
        for folder in (split, f"{split}annot"):
            (root / folder).mkdir(parents=True, exist_ok=True)
        _write_text(root / f"{split}.txt", "".join(lines))
    _write_provenance(
        root,
        "CamVid (SegNet)",
        "write_camvid",
        seed,
        train=train,
        val=val,
        test=test,
        height=height,
        width=width,
    )
    return root


def write_cvc_kitti(
    out_dir, *, train: int = 20, val: int = 6, height: int = 375, width: int = 1242, seed: int = 0
) -> Path:
    """Write a synthetic CVC KITTI semantic set under out_dir/kitti_semantic_cvc; returns that folder.

    {Training_00, Validation_07}/{RGB, GT}/%06d.png, GT colour-coded with CVC_COLOURS.
    """
    _check_integer("train", train, 1)
    _check_integer("val", val, 0)
    _check_size(height, width)
    _check_integer("seed", seed, 0)
    root = Path(out_dir) / "kitti_semantic_cvc"
    colours = np.asarray(CVC_COLOURS, np.uint8)[np.asarray(CAMVID_TO_CVC)]  # CamVid index -> CVC colour
    for split, count in (("train", train), ("val", val)):
        folder = root / _CVC_SPLITS[split]
        for sub in ("RGB", "GT"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        for index in range(count):
            scene = render_scene(scene_rng(seed, "cvc_kitti", split, index), height, width)
            write_png(folder / "RGB" / f"{index:06d}.png", scene.image)
            write_png(folder / "GT" / f"{index:06d}.png", colours[scene.labels])
    _write_provenance(
        root, "CVC KITTI semantic", "write_cvc_kitti", seed, train=train, val=val, height=height, width=width
    )
    return root


def render_cityscapes_scene(
    seed: int, split: str, index: int, *, height: int = 512, width: int = 1024
) -> Scene:
    """The scene behind the synthetic Cityscapes frame `index` of `split`, seen by Cityscapes' lens."""
    focal = CITYSCAPES_FOCAL_LENGTH / 2048 * width  # Cityscapes' narrower field of view than KITTI's
    return render_scene(scene_rng(seed, "cityscapes", split, index), height, width, focal_length=focal)


def write_cityscapes(
    out_dir,
    *,
    train: int = 8,
    val: int = 4,
    height: int = 512,
    width: int = 1024,
    seed: int = 0,
    city_train: str = "synthtown",
    city_val: str = "synthville",
) -> Path:
    """Write a synthetic Cityscapes set in the official layout under out_dir/cityscapes; returns that folder.

    leftImg8bit/<split>/<city>/<city>_<seq:06d>_000019_leftImg8bit.png RGB, and beside it in gtFine/ the
    same stem + _gtFine_labelIds.png (uint8 label ids), _gtFine_instanceIds.png (uint16, see
    cityscapes_instance_ids) and _gtFine_color.png (RGBA, CITYSCAPES_COLOURS). One city per split.
    The default size is half of Cityscapes' 2048 x 1024.
    """
    _check_integer("train", train, 1)
    _check_integer("val", val, 0)
    _check_six_digits(train=train, val=val)
    _check_size(height, width)
    _check_integer("seed", seed, 0)
    for name, city in (("city_train", city_train), ("city_val", city_val)):
        if not isinstance(city, str) or not _CITY_NAME.fullmatch(city):
            raise ValueError(f"{name} must be lowercase letters, digits and '-', got {city!r}")
    if city_train == city_val:  # as in Cityscapes, where no city is in two splits
        raise ValueError(f"city_train and city_val must differ, got {city_train!r} for both")
    root = Path(out_dir) / "cityscapes"
    for split, count, city in (("train", train, city_train), ("val", val, city_val)):
        for folder in ("leftImg8bit", "gtFine"):
            (root / folder / split / city).mkdir(parents=True, exist_ok=True)
        for index in range(count):
            _write_cityscapes_frame(root, split, city, index, height, width, seed)
    _write_provenance(
        root,
        "Cityscapes",
        "write_cityscapes",
        seed,
        train=train,
        val=val,
        height=height,
        width=width,
        city_train=city_train,
        city_val=city_val,
    )
    return root


def _write_cityscapes_frame(root, split, city, index, height, width, seed) -> None:
    scene = render_cityscapes_scene(seed, split, index, height=height, width=width)
    label_ids = np.asarray(CAMVID_TO_CITYSCAPES_ID, np.uint8)[scene.labels]
    # Cityscapes annotates the 20th frame of a 30-frame snippet: frame 000019, as in all of aachen's names.
    stem = f"{city}_{index:06d}_000019"
    write_png(root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png", scene.image)
    gt = root / "gtFine" / split / city
    write_png(gt / f"{stem}_gtFine_labelIds.png", label_ids)
    write_png(gt / f"{stem}_gtFine_instanceIds.png", cityscapes_instance_ids(label_ids))
    _write_rgba_png(gt / f"{stem}_gtFine_color.png", cityscapes_colours(label_ids))


def render_kitti_semantics_scene(seed: int, split: str, index: int, *, scale: float = 1.0) -> Scene:
    """The scene behind the synthetic KITTI semantics files <split>/image_2/<index:06d>_10.png."""
    _check_scale(scale, KITTI_SEMANTICS_SIZE[1])
    width, height = (round(size * scale) for size in KITTI_SEMANTICS_SIZE)
    return render_scene(
        scene_rng(seed, "kitti_semantics", split, index),
        height,
        width,
        focal_length=KITTI_FOCAL_LENGTH * scale,
    )


def write_kitti_semantics(
    out_dir, *, train: int = 10, test: int = 2, scale: float = 1.0, seed: int = 0
) -> Path:
    """Write a synthetic KITTI semantics benchmark set under out_dir/data_semantics; returns that folder.

    training/{image_2, semantic, semantic_rgb, instance}/<index:06d>_10.png: RGB, uint8 Cityscapes label
    ids, their colours (RGB), uint16 instances (see kitti_instance_ids); testing/image_2 holds images only.
    Frames are 1242 x 375 times scale, as most real ones.
    """
    _check_integer("train", train, 1)
    _check_integer("test", test, 0)
    _check_six_digits(train=train, test=test)
    _check_scale(scale, KITTI_SEMANTICS_SIZE[1])
    _check_integer("seed", seed, 0)
    root = Path(out_dir) / "data_semantics"
    for index in range(train):
        scene = render_kitti_semantics_scene(seed, "training", index, scale=scale)
        label_ids = np.asarray(CAMVID_TO_CITYSCAPES_ID, np.uint8)[scene.labels]
        name = f"{index:06d}_10.png"
        write_png(root / "training" / "image_2" / name, scene.image)
        write_png(root / "training" / "semantic" / name, label_ids)
        write_png(root / "training" / "semantic_rgb" / name, cityscapes_colours(label_ids))
        write_png(root / "training" / "instance" / name, kitti_instance_ids(label_ids))
    (root / "testing" / "image_2").mkdir(parents=True, exist_ok=True)
    for index in range(test):
        scene = render_kitti_semantics_scene(seed, "testing", index, scale=scale)
        write_png(root / "testing" / "image_2" / f"{index:06d}_10.png", scene.image)
    _write_provenance(
        root, "KITTI semantics", "write_kitti_semantics", seed, train=train, test=test, scale=scale
    )
    return root


def cityscapes_colours(label_ids: np.ndarray) -> np.ndarray:
    """(H, W) Cityscapes label ids (keys of CITYSCAPES_COLOURS) -> (H, W, 3) uint8 RGB colours."""
    table = np.zeros((256, 3), np.uint8)
    for label_id, colour in CITYSCAPES_COLOURS.items():
        table[label_id] = colour
    return table[label_ids]


def cityscapes_instance_ids(label_ids: np.ndarray) -> np.ndarray:
    """Cityscapes' *_instanceIds.png encoding of a label id map.

    Args:
        label_ids: (H, W) uint8 Cityscapes label ids.
    Returns:
        (H, W) uint16: label id * 1000 + instance (0, 1, ... per class) on objects of
        CITYSCAPES_INSTANCE_CLASSES; the label id elsewhere (and on objects past the 1000th, as crowds).
    """
    numbers = _instance_numbers(label_ids, limit=1000)
    ids = label_ids.astype(np.int32)
    return np.where(numbers > 0, ids * 1000 + numbers - 1, ids).astype(np.uint16)


def kitti_instance_ids(label_ids: np.ndarray) -> np.ndarray:
    """KITTI semantics' instance/*.png encoding of a label id map (it differs from Cityscapes').

    Args:
        label_ids: (H, W) uint8 Cityscapes label ids.
    Returns:
        (H, W) uint16: label id * 256 + instance, instances 1, 2, ... per class on objects of
        CITYSCAPES_INSTANCE_CLASSES, 0 elsewhere (and on objects past the 255th); so value // 256 = label id.
    """
    numbers = _instance_numbers(label_ids, limit=255)
    return (label_ids.astype(np.int32) * 256 + numbers).astype(np.uint16)


def _instance_numbers(label_ids, limit) -> np.ndarray:
    """(H, W) int32: 1, 2, ... for the connected regions of each instance class, numbered per class in
    reading order of their first pixel; 0 on other classes and on regions numbered past `limit`."""
    numbers = np.zeros(label_ids.shape, np.int32)
    for label_id in np.intersect1d(label_ids, CITYSCAPES_INSTANCE_CLASSES):
        count, components = cv2.connectedComponents((label_ids == label_id).astype(np.uint8), connectivity=8)
        inside = np.flatnonzero(components)
        # OpenCV's numbering follows its scan algorithm; renumber so that the encoding is defined here.
        _, first = np.unique(components.ravel()[inside], return_index=True)
        rank = np.zeros(count, np.int32)
        rank[1 + np.argsort(first)] = np.arange(1, count)
        numbers.ravel()[inside] = rank[components.ravel()[inside]]
    numbers[numbers > limit] = 0
    return numbers


def _write_rgba_png(path, rgb) -> None:
    """RGB as 8-bit RGBA with opaque alpha, as cityscapesscripts writes *_gtFine_color.png."""
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, encoded = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGRA))
    if not ok:
        raise ImageFileError(f"{path}: could not encode array of shape {rgb.shape} as PNG")
    write_bytes_atomic(path, encoded.tobytes())


_WRITERS = {
    "kitti_road": write_kitti_road,
    "camvid": write_camvid,
    "cvc_kitti": write_cvc_kitti,
    "cityscapes": write_cityscapes,
    "kitti_semantics": write_kitti_semantics,
}
DATASETS = tuple(_WRITERS)  # the names generate() accepts (e.g. for command-line choices)


def generate(dataset: str, out_dir, **kwargs) -> Path:
    """Write a synthetic dataset; kwargs go to its writer.

    dataset: "kitti_road", "camvid", "cvc_kitti", "cityscapes" or "kitti_semantics" (DATASETS).
    """
    if dataset not in _WRITERS:
        raise ValueError(f"dataset must be one of {DATASETS}, got {dataset!r}")
    return _WRITERS[dataset](out_dir, **kwargs)


def _write_provenance(root, dataset, writer, seed, **parameters) -> None:
    """SYNTHETIC.md: what this folder is, and how to make it again (no paths, so reruns are identical)."""
    arguments = ", ".join(f"{key}={value!r}" for key, value in parameters.items())
    text = (
        f"# SYNTHETIC DATA - not {dataset}\n\n"
        f"Every file here was generated by `fcn.data.synthetic` (fcn {fcn.__version__}): street scenes drawn\n"
        f"from polygons, written in the on-disk format of {dataset}. No pixel comes from a camera.\n"
        "Use it to run the code offline and in tests; never report scores on it as scores on the real data.\n\n"
        f"- generator: `fcn.data.synthetic.{writer}`\n"
        f"- seed: {seed}\n"
        f"- parameters: {arguments}\n\n"
        f'Regenerate: `python -c "from fcn.data import synthetic; '
        f"synthetic.{writer}('OUT_DIR', {arguments}, seed={seed})\"`\n"
    )
    _write_text(root / "SYNTHETIC.md", text)


def _write_text(path, text) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(path, text.encode())


def _check_integer(name, value, minimum) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _check_six_digits(**counts) -> None:
    for name, count in counts.items():
        if count > 1_000_000:  # file names number frames with 6 digits
            raise ValueError(f"{name} must be <= 1000000, got {count}")


def _check_size(height, width) -> None:
    _check_integer("height", height, MIN_SIZE)
    _check_integer("width", width, MIN_SIZE)


def _check_scale(scale, smallest: int = min(h for _, h in KITTI_ROAD_SIZES)) -> None:
    """scale must be in (0, 4] and keep `smallest` (the lowest full-size image height) >= MIN_SIZE."""
    if isinstance(scale, bool) or not isinstance(scale, numbers.Real) or not 0 < scale <= 4:
        raise ValueError(f"scale must be a number in (0, 4], got {scale!r}")
    if round(smallest * scale) < MIN_SIZE:
        raise ValueError(
            f"scale {scale} makes images under {MIN_SIZE} pixels high; use >= {MIN_SIZE / smallest:.3f}"
        )
