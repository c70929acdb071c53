#!/usr/bin/env python3
"""One table from bench_train's and bench/reference/train_step.py's JSON files: per setting, our s/step against
PyTorch's and our peak memory against PyTorch's; then AdamW's achieved bandwidth and the log-mel times.

Usage: python3 bench/reference/compare_training.py OURS.json TORCH.json [--merge BOTH.json]
       python3 bench/reference/compare_training.py BOTH.json
Either file may be missing (its columns show '-'). --merge also writes both results into one file (the device
tool returns at most 8 files), which the second form reads back.
Ratios are ours / PyTorch: below 1 means ours is faster (time) or smaller (memory).
Peak memory: ours is the device allocator's peak live bytes (every tensor, weights, gradients and AdamW moments
included) and its peak reserved bytes; PyTorch's is torch.cuda.max_memory_allocated / max_memory_reserved.
Exit status: 0 (it only reports); 1 when no result could be read; 2 bad arguments.
"""
import argparse
import json
import sys


def load(path):
    try:
        with open(path) as f:
            return json.load(f), None
    except (OSError, ValueError) as e:
        return None, f"{path}: {e}"


def gib(n):
    if not isinstance(n, (int, float)) or n <= 0:
        return "-"
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


def num(x):
    """Throughputs from well under 1 (the CPU check) to thousands (a GPU)."""
    return f"{x:.0f}" if x >= 100 else f"{x:.2f}"


def ratio(a, b, spec=".2f"):
    return format(a / b, spec) if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b > 0 else "-"


def cell(r, field, spec):
    """A measured value, or the setting's status when it did not run to the end (OOM, error)."""
    if r is None:
        return "-"
    if r.get("status") not in ("ok", "non_finite") or r.get(field) is None:
        return {"out_of_memory": "OOM"}.get(r.get("status"), r.get("status", "-"))[:9]
    return format(r[field], spec)


def main(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("files", nargs="+", help="OURS.json TORCH.json, or one file written by --merge")
    p.add_argument("--merge", help="also write both results into this one file")
    args = p.parse_args(argv[1:])
    if len(args.files) > 2:
        p.error("at most two files")
    if len(args.files) == 1:
        both, err = load(args.files[0])
        if err:
            print(f"compare_training: cannot read {err}")
            return 1
        ours, torch = both.get("ours"), both.get("pytorch")
    else:
        ours, err_o = load(args.files[0])
        torch, err_t = load(args.files[1])
        for err in (err_o, err_t):
            if err:
                print(f"compare_training: cannot read {err}")
    if ours is None and torch is None:
        return 1
    if args.merge:
        with open(args.merge, "w") as f:
            json.dump({"ours": ours, "pytorch": torch}, f, indent=1)
            f.write("\n")

    dev = (ours or {}).get("device", {}) or (torch or {}).get("device", {})
    # Files written before --objective existed timed the mel step.
    objectives = {side: doc.get("objective", "mel") for side, doc in (("ours", ours), ("PyTorch", torch)) if doc}
    head = f"training step ({'/'.join(sorted(set(objectives.values())))} objective) on {dev.get('name', '?')}"
    if ours:
        head += f"; ours: budget {gib(ours.get('budget_bytes'))}, {ours.get('steps')} timed steps"
    if torch:
        tf32 = torch.get("tf32", {})
        head += (f"; PyTorch {torch.get('torch_version')} / transformers {torch.get('transformers_version')}, fp32 eager, "
                 f"TF32 matmul={tf32.get('cuda_matmul_allow_tf32')} cudnn={tf32.get('cudnn_allow_tf32')}, "
                 f"budget {gib(torch.get('budget_bytes'))}")
    print(head)
    if len(set(objectives.values())) > 1:
        print(f"warning: the files time different objectives (ours {objectives['ours']}, "
              f"PyTorch {objectives['PyTorch']})")
    if ours and torch and ours.get("tokens") != torch.get("tokens"):
        print(f"warning: token counts differ (ours {ours.get('tokens')}, PyTorch {torch.get('tokens')})")

    o_set = {r["name"]: r for r in (ours or {}).get("settings", [])}
    t_set = {r["name"]: r for r in (torch or {}).get("settings", [])}
    names = list(o_set) + [n for n in t_set if n not in o_set]
    print(f"\n{'setting':<26} {'ours s/step':>11} {'torch s/step':>12} {'ratio':>6} {'ours peak':>10} {'torch peak':>10} "
          f"{'ratio':>6} {'ours rsrvd':>10} {'torch rsrvd':>11} {'ours items/s':>12}")
    for n in names:
        o, t = o_set.get(n), t_set.get(n)
        ok_o = o is not None and o.get("median_step_s") is not None
        ok_t = t is not None and t.get("median_step_s") is not None
        print(f"{n:<26} {cell(o, 'median_step_s', '.4f'):>11} {cell(t, 'median_step_s', '.4f'):>12} "
              f"{ratio(o['median_step_s'], t['median_step_s']) if ok_o and ok_t else '-':>6} "
              f"{gib(o.get('peak_live_bytes')) if ok_o else cell(o, 'peak_live_bytes', ''):>10} "
              f"{gib(t.get('peak_live_bytes')) if ok_t else cell(t, 'peak_live_bytes', ''):>10} "
              f"{ratio(o.get('peak_live_bytes'), t.get('peak_live_bytes')) if ok_o and ok_t else '-':>6} "
              f"{gib(o.get('peak_reserved_bytes')) if ok_o else '-':>10} "
              f"{gib(t.get('peak_reserved_bytes')) if ok_t else '-':>11} "
              f"{cell(o, 'samples_per_s', '.2f'):>12}")
    for side, sets in (("ours", o_set), ("PyTorch", t_set)):
        for n, r in sets.items():
            if r.get("error"):
                print(f"  {side} {n}: {r['status']}: {r['error'][:300]}")
    if ours:
        tails = [r.get("median_sync_tail_s") for r in o_set.values() if r.get("median_sync_tail_s") is not None]
        if tails:
            print(f"  ours: the objective's step returned up to {1e3 * max(tails):.2f} ms before the device was done "
                  "(included in s/step)")
        host = [r.get("host_target_logmel_s") for r in o_set.values() if r.get("host_target_logmel_s")]
        if host and not ours.get("targets_in_step"):
            print(f"  ours: the targets' host log-mel (precomputed here, inside every step in the training loop) costs "
                  f"{min(host):.3f}-{max(host):.3f} s per batch")
        bad = [n for n, r in o_set.items() if r.get("device_used_ge_reserved") is False]
        if bad:
            print(f"  ours: cudaMemGetInfo's used bytes fell below the allocator's reserved bytes in: {', '.join(bad)}")

    mas = {n: r["median_mas_s"] for n, r in t_set.items() if r.get("median_mas_s") is not None}
    if mas:
        print("  PyTorch: the alignment search on the host (ours runs it on the device), included in s/step: " +
              ", ".join(f"{n} {1e3 * v:.1f} ms" for n, v in mas.items()))

    print(f"\n{'AdamW':<10} {'ms/step':>9} {'GB/s':>8} {'% of peak':>9} {'elements':>12}")
    peak = dev.get("peak_bandwidth_gbs")
    for side, doc in (("ours", ours), ("PyTorch", torch)):
        a = (doc or {}).get("adamw")
        if not a:
            print(f"{side:<10} {'-':>9}")
            continue
        if a.get("status") != "ok":
            print(f"{side:<10} {a.get('status')}: {a.get('error', '')[:200]}")
            continue
        pct = f"{100 * a['achieved_gbs'] / peak:.0f}%" if peak else "-"
        print(f"{side:<10} {1e3 * a['step_s']:9.3f} {num(a['achieved_gbs']):>8} {pct:>9} {a['elements_updated']:>12}")
    print(f"(GB/s counts 4 reads + 3 writes of 4 bytes per updated element; peak {peak:.0f} GB/s from the device's "
          f"memory clock and bus width)" if peak else "(no peak bandwidth known)")

    print(f"\n{'log-mel b4':<10} {'fwd ms':>9} {'fwd+bwd ms':>11}")
    for side, doc in (("ours", ours), ("PyTorch", torch)):
        m = (doc or {}).get("logmel")
        if not m:
            print(f"{side:<10} {'-':>9}")
            continue
        if m.get("status") != "ok":
            print(f"{side:<10} {m.get('status')}: {m.get('error', '')[:200]}")
            continue
        print(f"{side:<10} {1e3 * m['forward_s']:9.3f} {1e3 * m['forward_backward_s']:11.3f}")
    m = (ours or {}).get("logmel")
    if m and m.get("status") == "ok":
        print(f"(ours: ~{num(m['forward_backward_gflops_estimate'])} GFLOP/s, an estimate: 5 N log2 N per FFT of "
              f"n_fft {m['n_fft']}, {m['frames']} frames x 4, forward and inverse, plus the mel projection)")
    print("\nratio = ours / PyTorch (< 1: ours faster or smaller); OOM = out of memory under the budget")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
