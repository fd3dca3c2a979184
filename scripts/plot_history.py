#!/usr/bin/python3
"""Draw the training and validation curves of a downhill history file.

Usage:
    python3 scripts/plot_history.py HISTORY.jsonl [--monitor NAME] [--output PATH]
                                    [--log] [--title TEXT]

HISTORY.jsonl is the file Options::history(path) writes: JSON Lines, one record
per training pass (and one closing record when max_updates ends the run). The
script draws one monitor (default "loss") against passes: the training values
at x = "pass" (records with "train"), the validation values at x = "valid_pass"
(records with "valid"). Null values (non-finite numbers) are left out.

Options:
    --monitor NAME    the monitor to draw (default loss)
    --output PATH     the PNG to write (default history.png)
    --log             a logarithmic y axis
    --title TEXT      the figure's title (default: the monitor and the file's name)

Example:
    build/examples/digits_factorization --history digits_history.jsonl
    python3 scripts/plot_history.py digits_history.jsonl --output digits_loss.png --log

Exits with status 2 and a message on stderr when the file is missing or
unreadable, holds no records, or has no such monitor (the message lists the
monitors it has), and with status 1 when the PNG was not written. A partly
written last line (a run still writing, or killed) is skipped with a warning.
Needs only Python 3 and matplotlib.
"""

import argparse
import json
import math
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)

PROG = "plot_history"


def fail(message, status=2):
    print(f"{PROG}: {message}", file=sys.stderr)
    sys.exit(status)


def read_records(path):
    """The file's records, in order. A bad last line is skipped; a bad line elsewhere fails."""
    if not os.path.isfile(path):
        fail(f"no such file: {path}")
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except (OSError, UnicodeDecodeError) as error:
        fail(f"cannot read {path}: {error}")
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
            fail(f"{path}:{n}: not a history record: {error}")
        records.append(record)
    if not records:
        fail(f"{path}: no records")
    return records


def monitor_names(records):
    """Every monitor of the training and validation records, in order of first appearance."""
    names = {}
    for record in records:
        for part in ("train", "valid"):
            if isinstance(record.get(part), dict):
                names.update(dict.fromkeys(record[part]))
    return list(names)


def points(records, part, x_key, monitor):
    """(xs, ys) of the records with `part`, nulls and non-numbers left out."""
    xs, ys = [], []
    for record in records:
        values = record.get(part)
        if not isinstance(values, dict):
            continue
        x, y = record.get(x_key), values.get(monitor)
        if isinstance(x, (int, float)) and isinstance(y, (int, float)) and math.isfinite(y):
            xs.append(x)
            ys.append(y)
    return xs, ys


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="Draw the training and validation curves of a downhill history file.")
    parser.add_argument("history", help="the JSON Lines history file")
    parser.add_argument("--monitor", default="loss", help="monitor to draw (default loss)")
    parser.add_argument("--output", default="history.png", help="PNG to write")
    parser.add_argument("--log", action="store_true", help="logarithmic y axis")
    parser.add_argument("--title", help="figure title")
    args = parser.parse_args(argv)

    records = read_records(args.history)
    known = monitor_names(records)
    if args.monitor not in known:
        fail(f"unknown monitor {args.monitor!r}; {args.history} has: "
             + (", ".join(known) if known else "none"))

    train = points(records, "train", "pass", args.monitor)
    valid = points(records, "valid", "valid_pass", args.monitor)
    if not train[0] and not valid[0]:
        fail(f"{args.history}: monitor {args.monitor!r} has no finite values")
    if args.log and not any(y > 0 for y in train[1] + valid[1]):
        fail(f"--log: monitor {args.monitor!r} has no positive values")

    fig, ax = plt.subplots(figsize=(8, 5))
    if train[0]:
        ax.plot(*train, "-", color="tab:blue", linewidth=1.5, label="training")
    if valid[0]:
        ax.plot(*valid, "o--", color="tab:orange", linewidth=1.2, markersize=4,
                label="validation")
    if args.log:
        ax.set_yscale("log")
    ax.set_xlabel("pass")
    ax.set_ylabel(args.monitor)
    ax.set_title(args.title if args.title is not None
                 else f"{args.monitor}: {os.path.basename(args.history)}")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    try:
        fig.savefig(args.output, dpi=100)
    except OSError as error:
        fail(f"cannot write {args.output}: {error}", status=1)
    plt.close(fig)
    if not os.path.isfile(args.output) or os.path.getsize(args.output) == 0:
        fail(f"{args.output} was not written", status=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
