#!/usr/bin/python3
"""The data-parallel step's table from bench/distributed_run.sh's JSON lines.

  distributed_report.py RESULTS.jsonl

Per launch, a phase's time is the mean over ranks of each rank's median over its
timed steps (the programs' headers say what each kind of step is). Per side:
  1 process:  loss/grad, update and total of its steps; no all-reduce.
  2 ranks:    total      = a data-parallel step (kind sync);
              loss/grad  = a step without communication (kind local: downhill's twin
                           optimizer, DDP's no_sync());
              update     = the update of the local step (downhill: the twin's apply,
                           the same update without the averaging; DDP: optimizer.step());
              all-reduce = total - loss/grad - update: what the data-parallel step
                           adds, communication and waiting for the other rank;
              raw        = one Gloo allreduce of the same n float32 in one tensor.
  downhill's 2 ranks, step() (kind step): total = opt->step(), the all-reduce overlapped
              with the backward pass; its exposed all-reduce = total - loss/grad - update
              (the local kind's), measured the same way as the others'.
Every number in the table is the median over rounds, with the range over rounds for
the ratios; ratios are taken within a round.
"""
import json
import sys
from collections import defaultdict

SIDES = ["downhill_1proc", "downhill_2rank", "torch_1proc", "ddp_2rank"]
LABELS = {"downhill_1proc": "downhill, 1 process", "downhill_2rank": "downhill, 2 ranks",
          "torch_1proc": "PyTorch, 1 process", "ddp_2rank": "DDP, 2 ranks"}


def median(values):
    values = sorted(values)
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2


def size_label(n):
    return {100000: "1e5", 10000000: "1e7"}.get(n, str(n))


def ms(seconds):
    if seconds != seconds:  # nan
        return "—"
    return f"{seconds * 1e3:.3g} ms" if seconds >= 1e-3 else f"{seconds * 1e6:.3g} µs"


def downhill_buckets(d):
    """downhill's buckets in bytes for w1, b1, w2, b2 (float32), by src/communicator.cpp's
    rule: consecutive tensors, a new bucket when the next tensor would take the current one
    past 25 MiB (a larger tensor is a bucket of its own)."""
    buckets = []
    for numel in (d * 5 * d, 5 * d, 5 * d * d, d):
        if not buckets or buckets[-1] + 4 * numel > 25 << 20:
            buckets.append(0)
        buckets[-1] += 4 * numel
    return buckets


def split(lines):
    """The phases of one launch (its ranks' lines)."""
    def mean(kind, phase):
        return sum(line[kind][phase] for line in lines) / len(lines)

    if lines[0]["world"] == 1:
        return {"grad": mean("sync", "grad"), "allreduce": float("nan"),
                "update": mean("sync", "update"), "total": mean("sync", "total"),
                "raw": float("nan"), "direct": float("nan")}
    total, grad, update = mean("sync", "total"), mean("local", "grad"), mean("local", "update")
    step = mean("step", "total") if "step" in lines[0] else float("nan")
    # The all-reduce measured inside the phase that holds it: downhill's apply() against
    # the twin's; DDP's forward/backward against no_sync()'s.
    phase = "update" if lines[0]["side"].startswith("downhill") else "grad"
    return {"grad": grad, "allreduce": total - grad - update, "update": update, "total": total,
            "raw": mean("raw", "update"), "direct": mean("sync", phase) - mean("local", phase),
            "step": step, "step_allreduce": step - grad - update}


def main():
    launches = defaultdict(list)  # (round, side, n) -> the ranks' lines
    meta = {}
    for text in open(sys.argv[1]):
        line = json.loads(text)
        launches[(line["round"], line["side"], line["n"])].append(line)
        meta[line["n"]] = line
        if line.get("bucket_bytes"):
            meta[(line["n"], "ddp_buckets")] = line["bucket_bytes"]
    rounds = sorted({key[0] for key in launches})
    sizes = sorted({key[2] for key in launches})
    phases = {key: split(lines) for key, lines in launches.items()}

    print(f"\n{len(rounds)} rounds; wall time per step, median over rounds; "
          "ratios: median of per-round ratios (range: smallest–largest round)\n")
    print("| n (parameters) | side | loss/grad | all-reduce | update | total | raw allreduce of n |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for n in sizes:
        for side in SIDES:
            per_round = [phases[(r, side, n)] for r in rounds if (r, side, n) in phases]
            cells = [ms(median([p[k] for p in per_round]))
                     for k in ("grad", "allreduce", "update", "total", "raw")]
            print(f"| {size_label(n)} ({meta[n]['params']:,}) | {LABELS[side]} | "
                  + " | ".join(cells) + " |")
            if side == "downhill_2rank" and per_round and per_round[0]["step"] == per_round[0]["step"]:
                cells = [ms(median([p[k] for p in per_round]))
                         for k in ("grad", "step_allreduce", "update", "step", "raw")]
                print(f"| {size_label(n)} ({meta[n]['params']:,}) | downhill, 2 ranks, step() "
                      "(all-reduce during the backward pass) | " + " | ".join(cells) + " |")

    print("\n| n | downhill: 2 ranks / 1 process | DDP: 2 ranks / 1 process "
          "| downhill overhead / DDP overhead (target ≤ 1) | downhill − 1 process "
          "| DDP − 1 process | downhill 2-rank step / DDP step |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for n in sizes:
        ours, theirs, relative, ours_abs, theirs_abs, steps = [], [], [], [], [], []
        for r in rounds:
            try:
                d1, d2 = phases[(r, "downhill_1proc", n)], phases[(r, "downhill_2rank", n)]
                t1, t2 = phases[(r, "torch_1proc", n)], phases[(r, "ddp_2rank", n)]
            except KeyError:
                continue
            ours.append(d2["total"] / d1["total"])
            theirs.append(t2["total"] / t1["total"])
            relative.append(ours[-1] / theirs[-1])
            ours_abs.append(d2["total"] - d1["total"])
            theirs_abs.append(t2["total"] - t1["total"])
            steps.append(d2["total"] / t2["total"])

        def cell(values, absolute=False):
            low, high = min(values), max(values)
            if absolute:
                return f"{ms(median(values))} ({ms(low)}–{ms(high)})"
            return f"{median(values):.2f} ({low:.2f}–{high:.2f})"

        mark = "✓" if median(relative) <= 1 else "✗"
        print(f"| {size_label(n)} | {cell(ours)} | {cell(theirs)} | {cell(relative)} {mark} | "
              f"{cell(ours_abs, True)} | {cell(theirs_abs, True)} | {cell(steps)} |")

    print("\n| n | downhill step() / DDP step (target at 1e7 ≤ 0.85) | step()'s exposed all-reduce "
          "/ apply()'s (target at 1e7 ≤ 0.5) | step()'s exposed all-reduce | apply()'s | "
          "step() / apply() step (2 ranks) |")
    print("| --- | --- | --- | --- | --- | --- |")
    for n in sizes:
        step_vs_ddp, exposed, step_abs, sync_abs, step_vs_sync = [], [], [], [], []
        for r in rounds:
            try:
                d2, t2 = phases[(r, "downhill_2rank", n)], phases[(r, "ddp_2rank", n)]
            except KeyError:
                continue
            if d2["step"] != d2["step"]:
                continue
            step_vs_ddp.append(d2["step"] / t2["total"])
            exposed.append(d2["step_allreduce"] / d2["allreduce"])
            step_abs.append(d2["step_allreduce"])
            sync_abs.append(d2["allreduce"])
            step_vs_sync.append(d2["step"] / d2["total"])
        if not step_vs_ddp:
            continue

        def span(values, absolute=False):
            low, high = min(values), max(values)
            if absolute:
                return f"{ms(median(values))} ({ms(low)}–{ms(high)})"
            return f"{median(values):.2f} ({low:.2f}–{high:.2f})"

        print(f"| {size_label(n)} | {span(step_vs_ddp)} | {span(exposed)} | "
              f"{span(step_abs, True)} | {span(sync_abs, True)} | {span(step_vs_sync)} |")

    print()
    for n in sizes:
        cells = []
        for side, what in (("downhill_2rank", "apply() − the twin's apply()"),
                           ("ddp_2rank", "forward/backward − no_sync()'s")):
            values = [phases[(r, side, n)]["direct"] for r in rounds if (r, side, n) in phases]
            cells.append(f"{LABELS[side]}: {what} = {ms(median(values))}")
        print(f"- n = {size_label(n)}, the all-reduce inside its phase: " + "; ".join(cells))
    for n in sizes:
        line = meta[n]
        ours = ", ".join(f"{b / 1e6:.3g} MB" for b in downhill_buckets(line["d"]))
        buckets = meta.get((n, "ddp_buckets"))
        ddp = (", ".join(f"{b / 1e6:.3g} MB" for b in buckets) if buckets else "unknown")
        print(f"- n = {size_label(n)}: MLP {line['d']} → {5 * line['d']} → {line['d']}, "
              f"{line['params']:,} float32 parameters ({line['params'] * 4 / 1e6:.3g} MB of "
              f"gradient), batch {line['batch']} per rank; downhill's buckets: {ours}; DDP's buckets (bucket_cap_mb = 25, "
              f"after its rebuild): {ddp}")


if __name__ == "__main__":
    main()
