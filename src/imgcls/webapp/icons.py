"""The app's icons, drawn with PIL: no image files to ship, any size on demand."""

from __future__ import annotations

import io

from PIL import Image, ImageDraw

ICON_SIZES = (192, 512)
BACKGROUND = (37, 99, 235)  # the page's accent colour
FOREGROUND = (255, 255, 255)


def icon_png(size: int) -> bytes:
    """A square PNG: a white viewfinder (four corner brackets and a dot) on blue. Drawn
    within the central 80%, the safe zone of a maskable icon, so a phone may crop it round."""
    image = Image.new("RGB", (size, size), BACKGROUND)
    draw = ImageDraw.Draw(image)
    low, high = round(size * 0.25), round(size * 0.75)
    arm, width = round(size * 0.14), max(2, round(size * 0.045))
    for x, y, dx, dy in ((low, low, 1, 1), (high, low, -1, 1), (low, high, 1, -1),
                         (high, high, -1, -1)):
        draw.line([(x, y + dy * arm), (x, y), (x + dx * arm, y)], fill=FOREGROUND,
                  width=width, joint="curve")
    radius = round(size * 0.08)
    center = size // 2
    draw.ellipse([center - radius, center - radius, center + radius, center + radius],
                 fill=FOREGROUND)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()
