#!/usr/bin/python3
"""Draw the Rosenbrock paths that examples/rosenbrock_paths writes.

Usage:
    build/examples/rosenbrock_paths --output paths.csv
    python3 scripts/plot_rosenbrock.py paths.csv --output rosenbrock_paths.png

The CSV has the columns algo,update,x,y, one row per recorded update of each
algorithm. The picture shows contour lines of log f for
f(x, y) = (1 - x)^2 + 100 (y - x^2)^2, each algorithm's path in its own color
(in the order the CSV lists them), the start and the minimum (1, 1).

Options:
    --output PATH     the PNG to write (default rosenbrock_paths.png)
    --title TEXT      the figure's title
    --dpi N           resolution (default 100; the figure is 8 x 6 inches)
    --full-color      keep matplotlib's RGBA PNG; by default the PNG is rewritten
                      with a 256-color palette, about a third of the size

Exits with status 2 and a message on stderr when the CSV is missing, malformed
or empty, and with status 1 when the PNG cannot be written. Needs only Python 3
and matplotlib (with the Pillow it requires).
"""

import argparse
import csv
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)
import numpy as np  # noqa: E402  (matplotlib depends on it)

# The smallest frame; it grows to hold every path, the start and the minimum.
X_RANGE = (-3.5, 2.0)
Y_RANGE = (-3.5, 3.0)


def fail(message):
    print(f"plot_rosenbrock: {message}", file=sys.stderr)
    sys.exit(2)


def read_paths(path):
    """Return {algo: (xs, ys)} in the CSV's order."""
    if not os.path.isfile(path):
        fail(f"no such file: {path}")
    paths = {}
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = {"algo", "x", "y"} - set(reader.fieldnames or [])
        if missing:
            fail(f"{path}: missing column(s) {', '.join(sorted(missing))}")
        for line, row in enumerate(reader, start=2):
            try:
                x, y = float(row["x"]), float(row["y"])
            except (TypeError, ValueError):
                fail(f"{path}:{line}: x and y must be numbers")
            xs, ys = paths.setdefault(row["algo"], ([], []))
            xs.append(x)
            ys.append(y)
    if not paths:
        fail(f"{path}: no rows")
    return paths


def shrink(path):
    """Rewrite the PNG with a 256-color palette: a third of the size, no visible change.
    Pillow comes with matplotlib (one of its requirements); without it the PNG stays."""
    try:
        from PIL import Image
    except ImportError:
        return
    with Image.open(path) as image:
        image.load()
    image.convert("RGB").quantize(256).save(path, optimize=True)


def frame(paths):
    """The x and y ranges: X_RANGE and Y_RANGE, each side pushed out past the farthest
    finite point beyond it, with a margin."""

    def grow(values, low, high):
        values = [v for v in values if np.isfinite(v)]
        if not values:
            return low, high
        margin = 0.05 * (max(values + [high]) - min(values + [low]))
        if min(values) < low:
            low = min(values) - margin
        if max(values) > high:
            high = max(values) + margin
        return low, high

    xs = [v for px, _ in paths.values() for v in px]
    ys = [v for _, py in paths.values() for v in py]
    return grow(xs, *X_RANGE), grow(ys, *Y_RANGE)


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="Draw the Rosenbrock paths of examples/rosenbrock_paths.")
    parser.add_argument("csv", help="the CSV that rosenbrock_paths wrote")
    parser.add_argument("--output", default="rosenbrock_paths.png", help="PNG to write")
    parser.add_argument("--title", default="Rosenbrock function: paths from (-3, -3)")
    parser.add_argument("--dpi", type=int, default=100)
    parser.add_argument("--full-color", action="store_true",
                        help="keep matplotlib's RGBA PNG instead of a 256-color one")
    args = parser.parse_args(argv)

    paths = read_paths(args.csv)

    x_range, y_range = frame(paths)
    xs = np.linspace(*x_range, 400)
    ys = np.linspace(*y_range, 400)
    gx, gy = np.meshgrid(xs, ys)
    f = (1 - gx) ** 2 + 100 * (gy - gx**2) ** 2

    fig, ax = plt.subplots(figsize=(8, 6))
    ax.contour(gx, gy, np.log(f + 1e-12), levels=20, colors="0.75", linewidths=0.6)
    colors = plt.get_cmap("tab10").colors
    for i, (algo, (px, py)) in enumerate(paths.items()):
        ax.plot(px, py, color=colors[i % len(colors)], linewidth=1.2, alpha=0.9, label=algo)
        ax.plot(px[-1], py[-1], "o", color=colors[i % len(colors)], markersize=4)
    first = next(iter(paths.values()))
    ax.plot(first[0][0], first[1][0], "ks", markersize=7, label="start")
    ax.plot(1, 1, "k*", markersize=12, label="minimum (1, 1)")
    ax.set_xlim(*x_range)
    ax.set_ylim(*y_range)
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.set_title(args.title)
    ax.legend(loc="upper left", fontsize="small", ncol=2)
    fig.tight_layout()
    try:
        fig.savefig(args.output, dpi=args.dpi)
        plt.close(fig)
        if not args.full_color:
            shrink(args.output)
    except OSError as error:
        fail(f"cannot write {args.output}: {error}", status=1)
    if not os.path.isfile(args.output) or os.path.getsize(args.output) == 0:
        print(f"plot_rosenbrock: {args.output} was not written", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
