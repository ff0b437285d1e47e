"""The published CUB-GHA ``generate_heatmap.py`` arithmetic, written out independently for tests.

Used by tests/test_heatmap.py and tests/test_generate_heatmap.py to check ``--compat``
against the published per-fixation loop (cub_pim.md §1.10), never by the library.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from gaze.attention.fixations import DisplayRect


def published_display_map(width, height, rect: DisplayRect, fixations, keep_all=False) -> np.ndarray:
    """The published CUB-GHA rendering (cub_pim.md §1.10), step by step, as uint8 (height, width).

    The loop is PyGaze's ``draw_heatmap`` edge handling, which the published script uses, with
    its 500 px window, sd 75 and the 1920x1080 screen: a negative coordinate is set to 0 and
    the kernel cut by it; a coordinate past the right/bottom edge shortens kernel and slice to
    end at the canvas border; numpy's shape check (and broadcasting) under the try/except
    decides the rest. ``keep_all`` instead pads the canvas so far that every window reaching
    the screen fits (what the default of :func:`render_display_heatmap` means).
    """
    window, strt = 500, 250
    cols, rows = np.meshgrid(np.arange(window), np.arange(window))
    gaus = np.exp(-1.0 * (((cols - strt) ** 2) / (2 * 75.0 * 75.0) + ((rows - strt) ** 2) / (2 * 75.0 * 75.0)))
    disp_w, disp_h = 1920, 1080
    if keep_all:
        strt = 500
    heatmap = np.zeros((disp_h + 2 * strt, disp_w + 2 * strt), dtype=float)
    for gx, gy, d in fixations:
        x = strt + int(gx) - window // 2
        y = strt + int(gy) - window // 2
        if keep_all:
            if -250 < gx < disp_w + 250 and -250 < gy < disp_h + 250:
                heatmap[y:y + window, x:x + window] += gaus * d
            continue
        if (not 0 < x < disp_w) or (not 0 < y < disp_h):
            hadj, vadj = [0, window], [0, window]
            if 0 > x:
                hadj[0] = abs(x)
                x = 0
            elif disp_w < x:
                hadj[1] = window - int(x - disp_w)
            if 0 > y:
                vadj[0] = abs(y)
                y = 0
            elif disp_h < y:
                vadj[1] = window - int(y - disp_h)
            try:
                heatmap[y:y + vadj[1], x:x + hadj[1]] += gaus[vadj[0]:vadj[1], hadj[0]:hadj[1]] * d
            except ValueError:  # the fixation was probably outside the display
                pass
        else:
            heatmap[y:y + window, x:x + window] += gaus * d
    screen = heatmap[strt:disp_h + strt, strt:disp_w + strt]
    crop = screen[rect.y0 : rect.y0 + rect.height, rect.x0 : rect.x0 + rect.width]
    crop = (crop - crop.min()) / (crop.max() - crop.min())
    grey = Image.fromarray(crop * 255)  # float64 -> mode 'F'
    assert grey.mode == "F"
    return np.asarray(grey.convert("L").resize((width, height)))


def published_parse(line: str):
    """The published parser: display header, then triples j < (n - 7) / 3 - 1 (last one lost)."""
    fields = line.split(",")
    width, height, disp_w, disp_h, x0, y0 = (int(v) for v in fields[1:7])
    count = (len(fields) - 7) // 3
    triples = [tuple(int(v) for v in fields[7 + 3 * j : 10 + 3 * j]) for j in range(count - 1)]
    return width, height, DisplayRect(disp_w, disp_h, x0, y0), triples
