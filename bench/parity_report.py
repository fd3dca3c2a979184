"""Side-by-side table of bench/parity.sh: per-round ratios, their median and range."""
import json
import statistics
import sys


def load(folder, side, round_number):
    with open(f"{folder}/{side}_{round_number}.json") as f:
        data = json.load(f)
    return {b["name"]: b["cpu_time"] for b in data["benchmarks"] if b.get("run_type") == "iteration"}


def spread(values):
    return f"{statistics.median(values):.3f} ({min(values):.2f}–{max(values):.2f})"


def main():
    folder, rounds = sys.argv[1], range(1, int(sys.argv[2]) + 1)
    before = {r: load(folder, "before", r) for r in rounds}
    after = {r: load(folder, "after", r) for r in rounds}
    print("| algorithm | momentum | n | after/before | fused/torch::optim before | after |")
    print("|---|---|---|---|---|---|")
    for name in before[1]:
        if "/fused/" not in name:
            continue
        algo, _, momentum, size = name.split("/")[1:5]
        row = f"| {algo} | {momentum} | {size} | {spread([after[r][name] / before[r][name] for r in rounds])} |"
        peer = f"update/{algo}/torch_optim/{momentum}/{size}/process_time"
        if peer in before[1]:
            row += f" {spread([before[r][name] / before[r][peer] for r in rounds])} |"
            row += f" {spread([after[r][name] / after[r][peer] for r in rounds])} |"
        else:
            row += " — | — |"
        print(row)


if __name__ == "__main__":
    main()
