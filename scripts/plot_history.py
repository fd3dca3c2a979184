#!/usr/bin/python3
"""Draw the training and validation curves of downhill history files.

Usage:
    python3 scripts/plot_history.py HISTORY.jsonl [HISTORY.jsonl ...] [--monitor NAME]
                                    [--output PATH] [--log] [--title TEXT]
                                    [--labels A,B,...]

HISTORY.jsonl is the file Options::history(path) writes: JSON Lines, one record
per training pass (and one closing record when max_updates or patience ends the
run). The script draws one monitor against passes. A monitor of the run's own
(a name in the records' "train" or "valid") is drawn as training values at
x = "pass" (records with "train") and validation values at x = "valid_pass"
(records with "valid"). A number that every record carries itself
("learning_rate", "updates", "seconds") is drawn once per pass at x = "pass",
closing records left out (they repeat their pass). Where a name is both, the
run's monitor is drawn. Null values (non-finite numbers) are left out.

One file is drawn as training (solid, blue) and validation (dashed with dots,
orange). Several files overlay on one plot, each in its own colour, training
solid and validation dashed, the legend naming each file: by default its file
name without extension (with as much of its folder as tells two equal names
apart), or the names --labels gives (one file with --labels is drawn that way too).

Options:
    --monitor NAME    the monitor to draw (default loss)
    --output PATH, -o PATH
                      the PNG to write (default history.png)
    --log             a logarithmic y axis
    --title TEXT      the figure's title (default: the monitor and the file's name,
                      or the number of files)
    --labels A,B,...  the legend's names of the files, one per file, comma-separated

Examples:
    build/examples/digits_factorization --history digits_history.jsonl
    python3 scripts/plot_history.py digits_history.jsonl --output digits_loss.png --log
    python3 scripts/plot_history.py digits_history.jsonl --monitor learning_rate -o lr.png
    python3 scripts/plot_history.py sgd.jsonl adam.jsonl --labels SGD,Adam -o compare.png

Exits with status 2 and a message on stderr when a file is missing or
unreadable, holds no records, or has no such monitor (the message lists the
monitors it has), and with status 1 when the PNG was not written. A partly
written last line (a run still writing, or killed) is skipped with a warning.
Needs only Python 3 and matplotlib.

As a module: load_runs(paths, monitor, labels) reads the files and
build_figure(runs, monitor, ...) returns the matplotlib figure that main() saves.
"""

import argparse
import collections
import json
import math
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)

PROG = "plot_history"

# Record keys that place a record (or flag it), not numbers worth plotting.
PLACE_KEYS = frozenset({"pass", "valid_pass", "validation", "closing", "train", "valid"})

# A curve is one run's values of the monitor: kind is "training", "validation" or "record"
# (a number every record carries, e.g. learning_rate).
Curve = collections.namedtuple("Curve", "kind xs ys")

# A run is one history file: label names it in an overlay's legend (None: the single-file
# look, whose legend names the curves only).
Run = collections.namedtuple("Run", "path label curves")

# The single-file look, unchanged from before overlays: a colour per kind of curve.
SINGLE_COLOURS = {"training": "tab:blue", "validation": "tab:orange", "record": "tab:blue"}
# Training and record curves solid, validation dashed with dots, in either look.
LINE_STYLES = {
    "training": dict(fmt="-", linewidth=1.5),
    "validation": dict(fmt="o--", linewidth=1.2, markersize=4),
    "record": dict(fmt="-", linewidth=1.5),
}


class HistoryError(Exception):
    """A history file that cannot be drawn; main() prints it and exits with status 2."""


def fail(message, status=2):
    print(f"{PROG}: {message}", file=sys.stderr)
    sys.exit(status)


def read_records(path):
    """The file's records, in order. A bad last line is skipped; a bad line elsewhere fails."""
    if not os.path.isfile(path):
        raise HistoryError(f"no such file: {path}")
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise HistoryError(f"cannot read {path}: {error}") from error
    numbered = [(n, line) for n, line in enumerate(lines, start=1) if line.strip()]
    records = []
    for i, (n, line) in enumerate(numbered):
        try:
            record = json.loads(line)
            if not isinstance(record, dict):
                raise ValueError("not a JSON object")
        except ValueError as error:
            if i == len(numbered) - 1:
                print(f"{PROG}: warning: {path}:{n}: skipping a partly written last line",
                      file=sys.stderr)
                break
            raise HistoryError(f"{path}:{n}: not a history record: {error}") from error
        records.append(record)
    if not records:
        raise HistoryError(f"{path}: no records")
    return records


def is_number(value):
    # bool is an int in Python; "closing": true is a flag, not a value.
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def monitor_names(records):
    """Every monitor of the training and validation records, in order of first appearance."""
    names = {}
    for record in records:
        for part in ("train", "valid"):
            if isinstance(record.get(part), dict):
                names.update(dict.fromkeys(record[part]))
    return list(names)


def record_field_names(records):
    """The numbers the records carry themselves (learning_rate, updates, seconds), in order.

    A null counts: it is how the writer stores a non-finite number."""
    names = {}
    for record in records:
        names.update(dict.fromkeys(key for key, value in record.items()
                                   if key not in PLACE_KEYS
                                   and (value is None or is_number(value))))
    return list(names)


def known_monitors(records):
    """Every name --monitor accepts for these records: the run's monitors first."""
    monitors = monitor_names(records)
    return monitors + [name for name in record_field_names(records) if name not in monitors]


def points(records, part, x_key, monitor):
    """(xs, ys) of the records with `part`, nulls and non-numbers left out."""
    xs, ys = [], []
    for record in records:
        values = record.get(part)
        if not isinstance(values, dict):
            continue
        x, y = record.get(x_key), values.get(monitor)
        if is_number(x) and is_number(y) and math.isfinite(y):
            xs.append(x)
            ys.append(y)
    return xs, ys


def field_points(records, field):
    """(xs, ys) of a number the records carry, one per pass: closing records repeat their
    pass, so they are left out."""
    xs, ys = [], []
    for record in records:
        if record.get("closing") is True:
            continue
        x, y = record.get("pass"), record.get(field)
        if is_number(x) and is_number(y) and math.isfinite(y):
            xs.append(x)
            ys.append(y)
    return xs, ys


def curves_of(records, path, monitor):
    """The non-empty curves of `monitor` in one file's records."""
    if monitor in monitor_names(records):
        found = [Curve("training", *points(records, "train", "pass", monitor)),
                 Curve("validation", *points(records, "valid", "valid_pass", monitor))]
    elif monitor in record_field_names(records):
        found = [Curve("record", *field_points(records, monitor))]
    else:
        known = known_monitors(records)
        raise HistoryError(f"unknown monitor {monitor!r}; {path} has: "
                           + (", ".join(known) if known else "none"))
    found = [curve for curve in found if curve.xs]
    if not found:
        raise HistoryError(f"{path}: monitor {monitor!r} has no finite values")
    return found


def default_labels(paths):
    """Each file's name without extension; where two are equal, as many of their folders as
    tell them apart, then a number for what still clashes (the same file given twice)."""
    parts = [os.path.normpath(os.path.abspath(os.path.splitext(p)[0])).split(os.sep)
             for p in paths]
    stems = [p[-1] for p in parts]
    labels = list(stems)
    for i, stem in enumerate(stems):
        # The same file given twice is no rival: no folder tells it apart; a number does.
        rivals = [other for other in parts if other[-1] == stem and other != parts[i]]
        if not rivals:
            continue
        for depth in range(2, len(parts[i]) + 1):
            if all(parts[i][-depth:] != rival[-depth:] for rival in rivals):
                labels[i] = "/".join(parts[i][-depth:])
                break
    return number_duplicates(labels)


def number_duplicates(labels):
    """The labels, the second and later of equal ones with " (2)", " (3)", ... added."""
    seen = collections.Counter()
    numbered = []
    for label in labels:
        seen[label] += 1
        numbered.append(label if seen[label] == 1 else f"{label} ({seen[label]})")
    return numbered


def load_runs(paths, monitor, labels=None):
    """The runs of the files, with their curves of `monitor`.

    labels: the legend's names of the files (None: default_labels). One file without labels
    keeps the single-file look (label None)."""
    if labels is not None and len(labels) != len(paths):
        raise HistoryError(f"{len(labels)} labels for {len(paths)} files")
    if labels is None:
        labels = [None] if len(paths) == 1 else default_labels(paths)
    return [Run(path, label, curves_of(read_records(path), path, monitor))
            for path, label in zip(paths, labels)]


def legend_label(run, curve, monitor):
    if run.label is None:
        return monitor if curve.kind == "record" else curve.kind
    return run.label if curve.kind == "record" else f"{run.label} ({curve.kind})"


def curve_colour(run, curve, index):
    # The single-file look tells training from validation by colour too; an overlay gives
    # each file the next colour of matplotlib's cycle.
    if run.label is None:
        return SINGLE_COLOURS[curve.kind]
    return f"C{index % len(plt.rcParams['axes.prop_cycle'])}"


def default_title(runs, monitor):
    if len(runs) == 1:
        return f"{monitor}: {os.path.basename(runs[0].path)}"
    return f"{monitor}: {len(runs)} runs"


def build_figure(runs, monitor, log=False, title=None):
    """The figure of the runs' curves of `monitor` (close it with plt.close when done)."""
    if log and not any(y > 0 for run in runs for curve in run.curves for y in curve.ys):
        raise HistoryError(f"--log: monitor {monitor!r} has no positive values")
    fig, ax = plt.subplots(figsize=(8, 5))
    for index, run in enumerate(runs):
        for curve in run.curves:
            style = dict(LINE_STYLES[curve.kind])
            ax.plot(curve.xs, curve.ys, style.pop("fmt"), color=curve_colour(run, curve, index),
                    label=legend_label(run, curve, monitor), **style)
    if log:
        ax.set_yscale("log")
    ax.set_xlabel("pass")
    ax.set_ylabel(monitor)
    ax.set_title(title if title is not None else default_title(runs, monitor))
    ax.grid(True, which="major", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig


def save_figure(fig, output):
    try:
        fig.savefig(output, dpi=100)
    except OSError as error:
        fail(f"cannot write {output}: {error}", status=1)
    finally:
        plt.close(fig)
    if not os.path.isfile(output) or os.path.getsize(output) == 0:
        fail(f"{output} was not written", status=1)


def parse_args(argv):
    parser = argparse.ArgumentParser(
        description="Draw the training and validation curves of downhill history files; "
                    "several files overlay on one plot, each in its own colour.",
        epilog="A monitor is a name in the records' train/valid values (loss, ...) or a "
               "number every record carries (learning_rate, updates, seconds).")
    parser.add_argument("history", nargs="+", help="JSON Lines history files (one or more)")
    parser.add_argument("--monitor", default="loss",
                        help="monitor to draw, e.g. loss or learning_rate (default loss)")
    parser.add_argument("--output", "-o", default="history.png",
                        help="PNG to write (default history.png)")
    parser.add_argument("--log", action="store_true", help="logarithmic y axis")
    parser.add_argument("--title", help="figure title")
    parser.add_argument("--labels",
                        help="comma-separated legend names of the files, one per file "
                             "(default: the file names without extension)")
    args = parser.parse_args(argv)
    if args.labels is not None:
        args.labels = [label.strip() for label in args.labels.split(",")]
        if len(args.labels) != len(args.history):
            parser.error(f"--labels: {len(args.labels)} names for {len(args.history)} files")
    return args


def main(argv=None):
    args = parse_args(argv)
    try:
        runs = load_runs(args.history, args.monitor, args.labels)
        fig = build_figure(runs, args.monitor, log=args.log, title=args.title)
    except HistoryError as error:
        fail(str(error))
    save_figure(fig, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
