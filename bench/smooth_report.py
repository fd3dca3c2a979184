#!/usr/bin/env python3
"""The table of bench/smooth_run.sh from its raw lines "ROUND SIDE PROBLEM EVALUATIONS SECONDS"
(torch's: "ROUND torch PROBLEM EVALUATIONS LOSS SECONDS"): per problem and side, the
evaluations and the median time to 1e-6 of the minimum, and the median over rounds of
downhill's time over each peer's, and of the time per evaluation."""
import statistics
import sys
from collections import defaultdict

SIDES = ["downhill", "downhill_by_hand", "downhill_by_hand_step", "lbfgspp", "torch"]


def main():
    runs = defaultdict(dict)  # (problem, round) -> side -> (evaluations, seconds)
    for line in open(sys.argv[1]):
        fields = line.split()
        if len(fields) < 5 or fields[1] == "minimum":
            continue
        round_, side, problem, evaluations = fields[0], fields[1], fields[2], int(fields[3])
        seconds = float(fields[-1])
        runs[(problem, round_)][side] = (evaluations, seconds)
    problems = sorted({p for p, _ in runs}, key=lambda p: list(dict.fromkeys(p for p, _ in runs)).index(p))

    def median_ratio(problem, side, peer, per_evaluation=False):
        ratios = []
        for (p, _), sides in runs.items():
            if p != problem or side not in sides or peer not in sides:
                continue
            (e1, t1), (e2, t2) = sides[side], sides[peer]
            if per_evaluation:
                t1, t2 = t1 / e1, t2 / e2
            ratios.append(t1 / t2)
        return statistics.median(ratios) if ratios else float("nan")

    print("| problem | evaluations: downhill / by hand / by hand, step() / LBFGS++ / torch | "
          "median ms: downhill / by hand / by hand, step() / LBFGS++ / torch | downhill ÷ torch | "
          "downhill ÷ LBFGS++ | per evaluation, by hand ÷ LBFGS++: minimize() / step() |")
    print("| --- | --- | --- | --- | --- | --- |")
    for problem in problems:
        cells_e, cells_t = [], []
        for side in SIDES:
            values = [s[side] for (p, _), s in runs.items() if p == problem and side in s]
            if not values:
                cells_e.append("–")
                cells_t.append("–")
                continue
            cells_e.append(f"{statistics.median(v[0] for v in values):g}")
            cells_t.append(f"{1e3 * statistics.median(v[1] for v in values):.3g}")
        print(f"| {problem} | {' / '.join(cells_e)} | {' / '.join(cells_t)} | "
              f"{median_ratio(problem, 'downhill', 'torch'):.2f} | "
              f"{median_ratio(problem, 'downhill', 'lbfgspp'):.2f} | "
              f"{median_ratio(problem, 'downhill_by_hand', 'lbfgspp', True):.2f} / "
              f"{median_ratio(problem, 'downhill_by_hand_step', 'lbfgspp', True):.2f} |")
    print(f"\n{len({r for _, r in runs})} paired rounds; one thread; float64; times to the first "
          "evaluation at most f* + 1e-6. downhill: autograd, through minimize(); by hand: "
          "the gradient written by hand (Evaluation::with_gradients), through minimize() or "
          "step() in a loop of one's own.")


if __name__ == "__main__":
    main()
