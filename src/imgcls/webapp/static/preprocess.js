// Decoded RGBA pixels -> the model's input: the same uint8 pixels imgcls's Predictor makes
// (data/decode.py, to_uint8_chw, on PIL). In PIL's order: transparency composited on white,
// then gray by PIL's formula (or RGB), then the shorter side resized to the model's size
// with PIL's antialiased bilinear filter, then the centre square cut out.
//
// Why not let a canvas resize: its resampling differs from PIL's by several levels of 255,
// enough to move a small model's probabilities by more than 1e-3. So the resize below
// copies Pillow's Resample.c, fixed-point arithmetic included, and gives identical bytes.
"use strict";
(function (global) {
  const PRECISION_BITS = 22;  // Resample.c: 32 - 8 - 2 bits of fraction in the weights
  const ONE_HALF = 1 << (PRECISION_BITS - 1);

  // PIL's Image.alpha_composite(white, image) (AlphaComposite.c, 7 bits of precision).
  // getImageData gives unpremultiplied colours, so faint pixels are already rounded there.
  function compositeOnWhite(value, alpha) {
    if (alpha === 0) return 255;
    const total = value * alpha * 128 + 255 * (255 - alpha) * 128 + (0x80 << 7);
    return (((total >> 8) + total) >> 8) >> 7;
  }

  // {channels} planes of width*height bytes: RGB, or gray as PIL's convert("L") computes
  // it, L = (19595 R + 38470 G + 7471 B + 2^15) >> 16 (ITU-R 601, in 16-bit fixed point).
  function toPlanes(rgba, width, height, channels) {
    const count = width * height;
    const planes = Array.from({ length: channels }, () => new Uint8Array(count));
    for (let i = 0; i < count; i++) {
      let r = rgba[4 * i], g = rgba[4 * i + 1], b = rgba[4 * i + 2];
      const alpha = rgba[4 * i + 3];
      if (alpha !== 255) {
        r = compositeOnWhite(r, alpha);
        g = compositeOnWhite(g, alpha);
        b = compositeOnWhite(b, alpha);
      }
      if (channels === 1) {
        planes[0][i] = (r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16;
      } else {
        planes[0][i] = r;
        planes[1][i] = g;
        planes[2][i] = b;
      }
    }
    return planes;
  }

  function bilinear(x) {
    if (x < 0) x = -x;
    return x < 1 ? 1 - x : 0;
  }

  // Resample.c precompute_coeffs + normalize_coeffs_8bpc for the whole axis (box 0..inSize):
  // per output pixel the first input pixel, how many follow, and integer weights.
  function coefficients(inSize, outSize) {
    const scale = inSize / outSize;
    const filterScale = Math.max(scale, 1);
    const support = 1 * filterScale;  // the bilinear filter's support is 1
    const size = Math.ceil(support) * 2 + 1;
    const first = new Int32Array(outSize);
    const count = new Int32Array(outSize);
    const weights = new Int32Array(outSize * size);
    const raw = new Float64Array(size);
    for (let out = 0; out < outSize; out++) {
      const center = (out + 0.5) * scale;
      const step = 1 / filterScale;
      const low = Math.max(0, Math.trunc(center - support + 0.5));
      const high = Math.min(inSize, Math.trunc(center + support + 0.5)) - low;
      let sum = 0;
      for (let x = 0; x < high; x++) {
        raw[x] = bilinear((x + low - center + 0.5) * step);
        sum += raw[x];
      }
      for (let x = 0; x < high; x++) {
        const weight = sum !== 0 ? raw[x] / sum : raw[x];
        const scaled = weight * (1 << PRECISION_BITS);
        weights[out * size + x] = weight < 0 ? Math.trunc(scaled - 0.5) : Math.trunc(scaled + 0.5);
      }
      first[out] = low;
      count[out] = high;
    }
    return { first, count, weights, size };
  }

  function clip8(sum) {
    const value = sum >> PRECISION_BITS;
    return value < 0 ? 0 : value > 255 ? 255 : value;
  }

  // One 8-bit plane resized along x (every row), as ImagingResampleHorizontal_8bpc.
  function resizeRows(plane, width, height, newWidth) {
    const { first, count, weights, size } = coefficients(width, newWidth);
    const out = new Uint8Array(newWidth * height);
    for (let y = 0; y < height; y++) {
      const row = y * width;
      for (let x = 0; x < newWidth; x++) {
        let sum = ONE_HALF;
        const start = row + first[x], base = x * size;
        for (let k = 0; k < count[x]; k++) sum += plane[start + k] * weights[base + k];
        out[y * newWidth + x] = clip8(sum);
      }
    }
    return out;
  }

  // One 8-bit plane resized along y, as ImagingResampleVertical_8bpc.
  function resizeColumns(plane, width, height, newHeight) {
    const { first, count, weights, size } = coefficients(height, newHeight);
    const out = new Uint8Array(width * newHeight);
    for (let y = 0; y < newHeight; y++) {
      const base = y * size;
      for (let x = 0; x < width; x++) {
        let sum = ONE_HALF;
        for (let k = 0; k < count[y]; k++) {
          sum += plane[(first[y] + k) * width + x] * weights[base + k];
        }
        out[y * width + x] = clip8(sum);
      }
    }
    return out;
  }

  // Pillow 13 runs the vertical pass first when the height loses more than twice as many
  // pixels as the width (Pillow #9549); earlier Pillows always go horizontal first. Found by
  // comparing both orders against Image.resize on 1,500 random size pairs: exact on all.
  function verticalFirst(width, height, newWidth, newHeight, passOrder) {
    return passOrder === "pillow13" && newHeight < height &&
      height - newHeight > 2 * (width - newWidth);
  }

  // PIL's two passes, each only when that side changes, rounded to 8 bits in between.
  function resizePlane(plane, width, height, newWidth, newHeight, passOrder) {
    if (newWidth !== width && newHeight !== height &&
        verticalFirst(width, height, newWidth, newHeight, passOrder)) {
      const columns = resizeColumns(plane, width, height, newHeight);
      return resizeRows(columns, width, newHeight, newWidth);
    }
    let result = plane;
    if (newWidth !== width) result = resizeRows(result, width, height, newWidth);
    if (newHeight !== height) result = resizeColumns(result, newWidth, height, newHeight);
    return result;
  }

  // decode.py _resized_size: the shorter side becomes `size`; torchvision truncates the other.
  function resizedSize(width, height, size) {
    const long = Math.trunc(size * Math.max(width, height) / Math.min(width, height));
    return width <= height ? [size, long] : [long, size];
  }

  // Python's round() on the halves (n + 0.5) that a centred crop produces: to the even side.
  function roundHalfEven(value) {
    const floor = Math.floor(value);
    const fraction = value - floor;
    if (fraction !== 0.5) return Math.round(value);
    return floor % 2 === 0 ? floor : floor + 1;
  }

  // RGBA bytes (getImageData at natural size) -> uint8 [channels, size, size], row-major.
  // passOrder: "pillow13" or "horizontal_first", the exporting Pillow's (model.json).
  function toModelPixels(rgba, width, height, channels, size, passOrder = "pillow13") {
    if (channels !== 1 && channels !== 3) throw new Error(`channels must be 1 or 3, not ${channels}`);
    let planes = toPlanes(rgba, width, height, channels);
    let [newWidth, newHeight] = [width, height];
    if (width !== size || height !== size) {
      [newWidth, newHeight] = resizedSize(width, height, size);
      if (newWidth !== width || newHeight !== height) {
        planes = planes.map((plane) =>
          resizePlane(plane, width, height, newWidth, newHeight, passOrder));
      }
    }
    const left = roundHalfEven((newWidth - size) / 2);
    const top = roundHalfEven((newHeight - size) / 2);
    const out = new Uint8Array(channels * size * size);
    planes.forEach((plane, channel) => {
      for (let y = 0; y < size; y++) {
        const from = (top + y) * newWidth + left;
        out.set(plane.subarray(from, from + size), (channel * size + y) * size);
      }
    });
    return out;
  }

  global.ImgclsPreprocess = { toModelPixels, resizedSize, roundHalfEven };
})(globalThis);
