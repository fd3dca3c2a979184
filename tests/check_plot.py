#!/usr/bin/python3
"""Checks for the plot scripts' ctest entries (tests/CMakeLists.txt).

    check_plot.py png PATH         exit 0 when PATH is a non-empty PNG (by its signature)
    check_plot.py status N CMD...  run CMD; exit 0 when it exits with status N and says
                                   why on stderr
"""

import subprocess
import sys

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def check_png(path):
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as error:
        print(f"check_plot: {error}", file=sys.stderr)
        return 1
    if len(data) <= len(PNG_SIGNATURE) or not data.startswith(PNG_SIGNATURE):
        print(f"check_plot: {path} is not a PNG ({len(data)} bytes)", file=sys.stderr)
        return 1
    print(f"check_plot: {path}: PNG, {len(data)} bytes")
    return 0


def check_status(expected, command):
    result = subprocess.run(command, capture_output=True, text=True)
    sys.stderr.write(result.stderr)
    if result.returncode != expected:
        print(f"check_plot: exit status {result.returncode}, expected {expected}", file=sys.stderr)
        return 1
    if not result.stderr.strip():
        print("check_plot: no message on stderr", file=sys.stderr)
        return 1
    return 0


def main(argv):
    if len(argv) == 2 and argv[0] == "png":
        return check_png(argv[1])
    if len(argv) >= 3 and argv[0] == "status" and argv[1].lstrip("-").isdigit():
        return check_status(int(argv[1]), argv[2:])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
