"""The float preprocessing path of a gate, in PIL + numpy: the reference the server's
(server/src/core/preprocess.rs, `Transform::Float`) must equal within 1e-5.

    preprocess_reference.py JOBS.json

JOBS.json is a list of jobs, each {"image": path, "out": path, "spec": {...}} with
spec = {"layout": "NHWC" | "NCHW", "height": H, "width": W,
        "colour": "gray" | "rgb" | "bgr",
        "resize": "stretch" | "center-crop" | "letterbox",
        "crop_fraction": f, "pad": p, "scale": s, "mean": [...], "std": [...]}.
Each job writes the model input (float32, shape [H, W, C] or [C, H, W]) to its "out"
as .npy.

Steps: PIL decodes; alpha is dropped; colour in float pixel units (a gray model from a
colour image: PIL's RGB to "F", (R*299 + G*587 + B*114) / 1000; a colour model from a
gray image: the gray value in each channel; BGR reverses RGB); each channel a mode "F"
image resized with Image.BILINEAR under the resize policy; (v / scale - mean) / std in
float32; the layout.
"""

import json
import sys

import numpy as np
from PIL import Image


def channels(image: Image.Image, colour: str) -> list[Image.Image]:
    """Mode "F" images, one per model channel, in pixel units."""
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGB", "RGBA"):
        rgb = image.convert("RGB")  # drops alpha, no compositing
        if colour == "gray":
            return [rgb.convert("F")]
        planes = [band.convert("F") for band in rgb.split()]
        return planes[::-1] if colour == "bgr" else planes
    if image.mode in ("L", "LA"):
        gray = image.convert("L").convert("F")
        return [gray] if colour == "gray" else [gray] * 3
    raise SystemExit(f"unsupported PIL mode {image.mode}")


def resize(plane: Image.Image, width: int, height: int, spec: dict) -> np.ndarray:
    """One channel under the resize policy, as a [height, width] float32 array."""
    w, h = plane.size
    policy = spec["resize"]

    def to(size):
        if size == plane.size:
            return plane
        return plane.resize(size, Image.BILINEAR)

    if policy == "stretch":
        return np.asarray(to((width, height)), dtype=np.float32)
    if policy == "center-crop":
        # gate.toml's numbers are f32 in the server: the same value here.
        crop_fraction = float(np.float32(spec["crop_fraction"]))
        s = max(width / w, height / h) / crop_fraction
        rw = max(width, int(np.floor(w * s + 0.5)))
        rh = max(height, int(np.floor(h * s + 0.5)))
        left, top = (rw - width) // 2, (rh - height) // 2
        full = np.asarray(to((rw, rh)), dtype=np.float32)
        return full[top : top + height, left : left + width]
    if policy == "letterbox":
        s = min(width / w, height / h)
        rw = max(1, int(np.floor(w * s + 0.5)))
        rh = max(1, int(np.floor(h * s + 0.5)))
        canvas = np.full((height, width), np.float32(spec["pad"]), dtype=np.float32)
        left, top = (width - rw) // 2, (height - rh) // 2
        canvas[top : top + rh, left : left + rw] = np.asarray(to((rw, rh)), dtype=np.float32)
        return canvas
    raise SystemExit(f"unknown resize policy {policy}")


def preprocess(path: str, spec: dict) -> np.ndarray:
    with Image.open(path) as image:
        image.load()
        return preprocess_image(image, spec)


def preprocess_image(image: Image.Image, spec: dict) -> np.ndarray:
    """A decoded image to the model input of `spec` (float32, in its layout)."""
    planes = channels(image, spec["colour"])
    width, height = spec["width"], spec["height"]
    scale = np.float32(spec["scale"])
    out = []
    for c, plane in enumerate(planes):
        v = resize(plane, width, height, spec)
        out.append((v / scale - np.float32(spec["mean"][c])) / np.float32(spec["std"][c]))
    chw = np.stack(out).astype(np.float32)
    if spec["layout"] == "NCHW":
        return chw
    if spec["layout"] == "NHWC":
        return np.ascontiguousarray(chw.transpose(1, 2, 0))
    raise SystemExit(f"unknown layout {spec['layout']}")


def main():
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    with open(sys.argv[1]) as f:
        jobs = json.load(f)
    for job in jobs:
        np.save(job["out"], preprocess(job["image"], job["spec"]))
    print(f"{len(jobs)} images preprocessed")


if __name__ == "__main__":
    main()
