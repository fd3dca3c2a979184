#!/usr/bin/python3
"""Assembles the one table `make bench` prints from the JSON the benchmarks wrote.

usage: report.py RESULTS_DIR   (update.json, e2e.json, peers.json, memory_*.json,
context.txt). Times are medians over repetitions of CPU time (one LibTorch thread)
or wall time (several), all from the same run.
"""
import json
import pathlib
import sys

SIZES = [1_000, 100_000, 16_000_000]
SIZE_LABELS = {1_000: "1e3", 100_000: "1e5", 16_000_000: "1.6e7"}
ALGORITHMS = ["sgd", "nag", "rprop", "rmsprop", "adagrad", "adadelta", "esgd", "adam"]
PEERS = {"sgd": "momentum", "adagrad": "plain", "rmsprop": "plain", "adam": "plain"}
TARGET_VS_TORCH = {"adam": 0.40, "rmsprop": 0.40, "adagrad": 0.55, "sgd": 0.70}
SLOTS = {"sgd": 0, "nag": 0, "rprop": 2, "rmsprop": 2, "adagrad": 1, "adadelta": 2, "esgd": 1,
         "adam": 2}


def floats_moved(algo, momentum):
    extra = (1 if algo == "esgd" else 0) + (2 if momentum == "momentum" else 0)
    return 3 + 2 * SLOTS[algo] + extra


def google_medians(path):
    """name (without the /process_time or /real_time suffix) -> median seconds."""
    data = json.loads(pathlib.Path(path).read_text())
    threads = int(data["context"].get("torch_threads", "1"))
    field = "cpu_time" if threads == 1 else "real_time"
    scale = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}
    out, counters = {}, {}
    for b in data["benchmarks"]:
        if b.get("aggregate_name") != "median":
            continue
        # Keep the benchmark's own name: drop /iterations:…, /repeats:…, /process_time.
        name = "/".join(part for part in b["run_name"].split("/")
                        if ":" not in part and part not in ("process_time", "real_time"))
        out[name] = b[field] * scale[b["time_unit"]]
        counters[name] = b
    return out, counters, data["context"], field


def fmt_time(seconds):
    if seconds is None:
        return "—"
    for unit, factor in (("s", 1), ("ms", 1e-3), ("µs", 1e-6)):
        if seconds >= factor:
            return f"{seconds / factor:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


def fmt_ratio(value, target=None, below=True):
    if value is None:
        return "—"
    text = f"{value:.2f}"
    if target is not None:
        met = value <= target if below else value >= target
        text += " ✓" if met else f" ✗ (target {'≤' if below else '≥'} {target})"
    return text


def main():
    results = pathlib.Path(sys.argv[1])
    update, _, context, field = google_medians(results / "update.json")
    e2e, e2e_runs, _, _ = google_medians(results / "e2e.json")
    peers = json.loads((results / "peers.json").read_text())
    python = peers["seconds"]
    lines = []
    say = lines.append

    say((results / "context.txt").read_text().strip())
    say(f"google-benchmark: {context.get('num_cpus')} CPUs at {context.get('mhz_per_cpu')} MHz; "
        f"LibTorch threads: {context.get('torch_threads')}; PyTorch threads: "
        f"{peers['context']['threads']}; times: medians of {field.replace('_', ' ')}")
    say("")
    say("## Update step, float32 (opt->apply(grads); torch.optim step())")
    say("")
    say("| algorithm | momentum | n | fused | reference | fused/reference | torch::optim | "
        "fused/torch::optim | copy (same bytes) | fused bandwidth / copy | PyTorch | "
        "PyTorch foreach | PyTorch best / fused |")
    say("|" + "---|" * 13)
    for n in SIZES:
        for algo in ALGORITHMS:
            for momentum in ("plain", "momentum"):
                fused = update.get(f"update/{algo}/fused/{momentum}/{n}")
                reference = update.get(f"update/{algo}/reference/{momentum}/{n}")
                floats = floats_moved(algo, momentum)
                copies = [update.get(f"copy/{floats}x/{kind}/{n}") for kind in ("memcpy", "stream")]
                copies = [c for c in copies if c is not None]
                copy = min(copies) if copies else None
                has_peer = PEERS.get(algo) == momentum
                torch_optim = update.get(f"update/{algo}/torch_optim/{momentum}/{n}") \
                    if has_peer else None
                py = python.get(f"update/{algo}/pytorch/{n}") if has_peer else None
                py_foreach = python.get(f"update/{algo}/pytorch_foreach/{n}") if has_peer else None
                vs_torch = fused / torch_optim if (fused and torch_optim) else None
                target = TARGET_VS_TORCH.get(algo) if n == 16_000_000 else None
                if algo == "adam" and n == 1_000 and vs_torch is not None:
                    vs_torch_text = fmt_ratio(vs_torch, 1 / 3)
                else:
                    vs_torch_text = fmt_ratio(vs_torch, target)
                bandwidth = copy / fused if (copy and fused) else None
                py_best = min(x for x in (py, py_foreach) if x) if (py or py_foreach) else None
                say(f"| {algo} | {momentum} | {SIZE_LABELS[n]} | {fmt_time(fused)} | {fmt_time(reference)} | "
                    f"{fmt_ratio(fused / reference if fused and reference else None)} | "
                    f"{fmt_time(torch_optim)} | {vs_torch_text} | {fmt_time(copy)} | "
                    f"{fmt_ratio(bandwidth, 0.70 if n == 16_000_000 else None, below=False)} | "
                    f"{fmt_time(py)} | {fmt_time(py_foreach)} | "
                    f"{fmt_ratio(py_best / fused if py_best and fused else None)} |")
    say("")
    say("fused/torch::optim: time ratio, lower is better. fused bandwidth / copy: the time of "
        "copying the bytes the fused kernel must move (the faster of memcpy and a "
        "streaming-store copy) over the fused apply() time. apply() also reads each gradient "
        "once more for the non-finite check and norm:")
    say("")
    for n in SIZES:
        check = update.get(f"check/sgd/{n}")
        say(f"- non-finite check alone (apply() on a gradient ending in NaN), n={SIZE_LABELS[n]}: "
            f"{fmt_time(check)}")
    say("")
    say("## End to end")
    say("")
    say("| run | downhill | torch::optim (C++) | PyTorch | downhill / torch::optim | "
        "PyTorch / downhill |")
    say("|---|---|---|---|---|---|")
    rb_d, rb_t = e2e.get("e2e/rosenbrock/downhill"), e2e.get("e2e/rosenbrock/torch_optim")
    rb_p = python.get("e2e/rosenbrock/pytorch")
    say(f"| Rosenbrock 2-D, 10 000 SGD updates | {fmt_time(rb_d)} | {fmt_time(rb_t)} | "
        f"{fmt_time(rb_p)} | {fmt_ratio(rb_d / rb_t if rb_d and rb_t else None, 1.0)} | "
        f"{fmt_ratio(rb_p / rb_d if rb_p and rb_d else None, 2.0, below=False)} |")
    mf_d, mf_t = e2e.get("e2e/factorization/downhill"), e2e.get("e2e/factorization/torch_optim")
    say(f"| factorization 400×784, RMSProp, 3 passes of 10 batches | {fmt_time(mf_d)} | "
        f"{fmt_time(mf_t)} | — | {fmt_ratio(mf_d / mf_t if mf_d and mf_t else None, 1.0)} | — |")
    losses = {k: v.get("final_loss") for k, v in e2e_runs.items()}
    say("")
    say("final losses (same work): " + ", ".join(
        f"{k.split('/', 1)[1]} {v:.6g}" for k, v in losses.items() if v is not None) +
        f", rosenbrock/pytorch {peers.get('rosenbrock_final_loss', float('nan')):.6g}")
    say("")
    say("## Memory: one Adam step, 1.6e7 float32 parameters (VmHWM increase)")
    say("")
    say("| side | peak increase | in parameter-sized tensors |")
    say("|---|---|---|")
    for side in ("downhill", "torch_optim"):
        path = results / f"memory_{side}.json"
        if path.exists():
            m = json.loads(path.read_text())
            say(f"| {side} | {m['increase_kib'] / 1024:.1f} MiB | {m['increase_tensors']:.2f} |")
    say("")
    say("downhill's state is m and v (2 tensors); anything above that is a temporary.")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
