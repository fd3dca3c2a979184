#!/usr/bin/python3
"""Tests of scripts/plot_history.py: learning-rate plots, overlays of several runs, the
unknown-monitor error and the single-file plot.

    /usr/bin/python3 tests/plot_history_test.py

Needs python3-matplotlib. Writes its history files (in src/history.cpp's format) and pictures
to a temporary folder; exits non-zero when a test fails.
"""

import importlib.util
import math
import os
import subprocess
import sys
import tempfile
import unittest

os.environ["MPLBACKEND"] = "Agg"  # no display, for the script run as a child process too
import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.colors  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402

SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "scripts",
                      "plot_history.py")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def load_script():
    spec = importlib.util.spec_from_file_location("plot_history", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


plot_history = load_script()


def json_number(value):
    # As src/history.cpp writes numbers: %.17g, null for non-finite ones.
    return "%.17g" % value if math.isfinite(value) else "null"


def json_monitors(monitors):
    return "{" + ", ".join(f'"{name}": {json_number(value)}'
                           for name, value in monitors.items()) + "}"


def history_line(pass_, updates, seconds, learning_rate, train=None, valid=None,
                 validation=0, closing=False):
    """One record, its fields in the order and spelling of src/history.cpp's history_line."""
    line = f'{{"pass": {pass_}'
    if closing:
        line += ', "closing": true'
    line += f', "updates": {updates}, "seconds": {json_number(seconds)}'
    line += f', "learning_rate": {json_number(learning_rate)}'
    if train is not None:
        line += f', "train": {json_monitors(train)}'
    if valid is not None:
        # A closing validation follows its pass; any other comes before it.
        valid_pass = pass_ if closing else pass_ - 1
        line += f', "validation": {validation}, "valid_pass": {valid_pass}'
        line += f', "valid": {json_monitors(valid)}'
    return line + "}"


def write_history(path, passes=4, scale=1.0):
    """A run of `passes` passes with a halving learning rate, a validation before passes 1
    and 3, and a closing record. Returns the learning rates written, one per pass."""
    rates = [0.1 / 2 ** k for k in range(passes)]
    lines = []
    validation = 0
    for p in range(1, passes + 1):
        valid = None
        if p % 2 == 1:
            validation += 1
            valid = {"loss": scale * 3.0 / p, "acc": 0.1 * p}
        lines.append(history_line(p, 10 * p, 0.1 * p, rates[p - 1],
                                  train={"loss": scale * 2.0 / p, "acc": 0.2 * p},
                                  valid=valid, validation=validation))
    lines.append(history_line(passes, 10 * passes, 0.1 * passes + 0.05, rates[-1],
                              valid={"loss": scale * 0.4, "acc": 0.9},
                              validation=validation + 1, closing=True))
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    return rates


def run_script(*args, cwd=None):
    return subprocess.run([sys.executable, SCRIPT, *args], capture_output=True, text=True,
                          cwd=cwd)


def legend_texts(fig):
    return [text.get_text() for text in fig.axes[0].get_legend().get_texts()]


def line_colours(fig):
    return [matplotlib.colors.to_hex(line.get_color()) for line in fig.axes[0].get_lines()]


class PlotHistoryTest(unittest.TestCase):
    def setUp(self):
        self.folder = tempfile.TemporaryDirectory(prefix="plot_history_test_")
        self.dir = self.folder.name

    def tearDown(self):
        plt.close("all")
        self.folder.cleanup()

    def path(self, *names):
        path = os.path.join(self.dir, *names)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        return path

    def assert_png(self, path):
        self.assertTrue(os.path.isfile(path), f"{path} not written")
        with open(path, "rb") as f:
            data = f.read()
        self.assertTrue(data.startswith(PNG_SIGNATURE) and len(data) > 1000,
                        f"{path} is not a PNG ({len(data)} bytes)")

    def test_learning_rate_plots_a_png(self):
        history = self.path("run.jsonl")
        rates = write_history(history)
        output = self.path("lr.png")
        result = run_script(history, "--monitor", "learning_rate", "--output", output)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assert_png(output)
        # One point per pass: the closing record repeats the last pass and is left out.
        fig = plot_history.build_figure(plot_history.load_runs([history], "learning_rate"),
                                        "learning_rate")
        lines = fig.axes[0].get_lines()
        self.assertEqual(len(lines), 1)
        self.assertEqual(list(lines[0].get_xdata()), [1, 2, 3, 4])
        self.assertEqual(list(lines[0].get_ydata()), rates)
        self.assertEqual(fig.axes[0].get_ylabel(), "learning_rate")

    def test_every_record_number_is_a_monitor(self):
        history = self.path("run.jsonl")
        write_history(history)
        records = plot_history.read_records(history)
        self.assertEqual(plot_history.known_monitors(records),
                         ["loss", "acc", "updates", "seconds", "learning_rate"])
        for monitor in ("updates", "seconds"):
            output = self.path(f"{monitor}.png")
            result = run_script(history, "--monitor", monitor, "-o", output)
            self.assertEqual(result.returncode, 0, result.stderr)
            self.assert_png(output)

    def test_two_files_overlay_with_a_legend(self):
        first, second = self.path("sgd.jsonl"), self.path("adam.jsonl")
        write_history(first)
        write_history(second, scale=0.5)
        fig = plot_history.build_figure(plot_history.load_runs([first, second], "loss"), "loss")
        self.assertEqual(legend_texts(fig), ["sgd (training)", "sgd (validation)",
                                             "adam (training)", "adam (validation)"])
        colours = line_colours(fig)
        self.assertEqual(colours[0], colours[1], "one colour per file")
        self.assertEqual(colours[2], colours[3], "one colour per file")
        self.assertNotEqual(colours[0], colours[2], "each file its own colour")
        styles = [line.get_linestyle() for line in fig.axes[0].get_lines()]
        self.assertEqual(styles, ["-", "--", "-", "--"], "training solid, validation dashed")
        self.assertEqual(fig.axes[0].get_lines()[2].get_ydata()[0], 1.0)  # the second file's

        output = self.path("overlay.png")
        result = run_script(first, second, "--labels", "SGD,Adam", "-o", output)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assert_png(output)

    def test_labels_name_the_files(self):
        first, second = self.path("a.jsonl"), self.path("b.jsonl")
        write_history(first)
        write_history(second)
        runs = plot_history.load_runs([first, second], "learning_rate", labels=["SGD", "Adam"])
        self.assertEqual(legend_texts(plot_history.build_figure(runs, "learning_rate")),
                         ["SGD", "Adam"])
        result = run_script(first, second, "--labels", "only_one",
                            "-o", self.path("wrong.png"))
        self.assertEqual(result.returncode, 2)
        self.assertIn("--labels", result.stderr)

    def test_equal_file_names_get_distinct_labels(self):
        first, second = self.path("a", "history.jsonl"), self.path("b", "history.jsonl")
        write_history(first)
        write_history(second)
        runs = plot_history.load_runs([first, second, first], "loss")
        self.assertEqual([run.label for run in runs], ["a/history", "b/history", "a/history (2)"])

    def test_unknown_monitor_is_a_clear_error(self):
        history = self.path("run.jsonl")
        write_history(history)
        output = self.path("unknown.png")
        result = run_script(history, "--monitor", "no_such_monitor", "--output", output)
        self.assertEqual(result.returncode, 2)
        self.assertEqual(result.stderr.strip(),
                         f"plot_history: unknown monitor 'no_such_monitor'; {history} has: "
                         "loss, acc, updates, seconds, learning_rate")
        self.assertFalse(os.path.exists(output))

    def test_unknown_monitor_in_one_of_two_files_names_that_file(self):
        first, second = self.path("first.jsonl"), self.path("second.jsonl")
        write_history(first)
        with open(second, "w", encoding="utf-8") as f:
            f.write(history_line(1, 10, 0.1, 0.1, train={"loss": 1.0}) + "\n")
        result = run_script(first, second, "--monitor", "acc", "-o", self.path("x.png"))
        self.assertEqual(result.returncode, 2)
        self.assertIn(f"unknown monitor 'acc'; {second} has: loss, updates", result.stderr)

    def test_missing_file_fails_with_status_2(self):
        result = run_script(self.path("no_such.jsonl"), "-o", self.path("x.png"))
        self.assertEqual(result.returncode, 2)
        self.assertIn("no such file", result.stderr)

    def test_single_file_plots_as_before(self):
        history = self.path("run.jsonl")
        write_history(history)
        fig = plot_history.build_figure(plot_history.load_runs([history], "loss"), "loss")
        self.assertEqual(legend_texts(fig), ["training", "validation"])
        self.assertEqual(line_colours(fig), [matplotlib.colors.to_hex("tab:blue"),
                                             matplotlib.colors.to_hex("tab:orange")])
        self.assertEqual(fig.axes[0].get_title(), "loss: run.jsonl")
        train, valid = fig.axes[0].get_lines()
        self.assertEqual(list(train.get_xdata()), [1, 2, 3, 4])
        # Validations at their valid_pass, the closing one included.
        self.assertEqual(list(valid.get_xdata()), [0, 2, 4])

        # Without --output the picture is history.png in the working folder.
        result = run_script(history, "--monitor", "acc", "--log", "--title", "T", cwd=self.dir)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assert_png(os.path.join(self.dir, "history.png"))


if __name__ == "__main__":
    unittest.main()
