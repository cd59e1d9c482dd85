"""Markdown rendering of a benchmark run (``benchmarks/README.md``)."""

from __future__ import annotations

from pathlib import Path

from benchmarks.configs import CONFIGS, IMPLEMENTATIONS

HEADER = """# Benchmarks

Training throughput (forward, backward and an Adam update of one recurrent layer, loss
`mean(y^2)`, float32 unless marked) and forward throughput in tokens/s (`batch x time` per
step), against PyTorch `nn.LSTM`/`nn.GRU` and stock Flax (`nnx.RNN` with
`OptimizedLSTMCell`/`GRUCell`), each implementation in its own process and all timed in
interleaved rounds in the same run. Regenerate with `make bench` (`python -m benchmarks.run`);
each run also writes a JSON file to `benchmarks/results/`. Why the numbers are what they are,
and what holds each configuration back: `docs/performance.md`.

Configurations: A = batch 32, time 128, input 128, hidden 256; B = 64, 256, 256, 512;
C = 16, 1024, 64, 128; long = 16, 8192, 128, 256. GFLOP/s counts the matmul work only:
`2 B T G H (I + H)` forward (`G` = 4 gates for the LSTM, 3 for the GRU), three times that
for a training step.
"""

GOALS = {"lstm": {"torch": 1.0, "flax": 1.5}, "gru": {"torch": 1.0}}

# Where a goal is missed: the limit found, in one line (details in docs/performance.md).
HOLD_BACK: dict[tuple[str, str], str] = {
    ("lstm", "A"): "the XLA paths run each step's small product (32 x 256 by 256 x 1024) as a "
    "kernel of its own, one after another; the compiled CPU loops (table below) run the "
    "whole recurrence in one call per direction",
    ("lstm", "B"): "large products (64 x 512 by 512 x 2048) dominate and run at the same "
    "speed in stock Flax's scan: the fused backward saves only the elementwise work and the "
    "per-step weight-gradient products, about 20 %",
}


def _label(rec: dict) -> str:
    return f"{rec['config']} ({rec['setting']})" if rec.get("setting") else rec["config"]


def _fmt(x: float | None, digits: int = 0) -> str:
    if x is None:
        return "-"
    return f"{x:,.{digits}f}"


def _tps(rec: dict | None, mode: str = "train") -> float | None:
    if rec is None or mode not in rec:
        return None
    return rec[mode]["tokens_per_s"]


def _best(by: dict, cell: str, config: str, impls) -> float | None:
    """The best training throughput among ``impls`` (PyTorch's two thread-waiting policies)."""
    found = [_tps(by.get((cell, config, i))) for i in impls]
    found = [f for f in found if f is not None]
    return max(found) if found else None


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a / b


def headline(records: list[dict]) -> list[str]:
    """The rnnlab-fused / peer training-throughput ratios against the goals."""
    by = {
        (r["cell"], r["config"], r["impl"]): r
        for r in records
        if "error" not in r and not r.get("setting")
    }
    lines = [
        "| cell | config | rnnlab fused | PyTorch (best policy) | stock Flax | fused / PyTorch "
        "| fused / Flax | fused / rnnlab scan | goal met | what holds it back |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for cell in ("lstm", "gru"):
        for config in ("A", "B", "C"):
            fused = _tps(by.get((cell, config, "rnnlab-fused")))
            if fused is None:
                continue
            torch = _best(by, cell, config, ("torch", "torch-passive"))
            flax = _tps(by.get((cell, config, "flax")))
            scan = _tps(by.get((cell, config, "rnnlab-scan")))
            r_torch, r_flax = _ratio(fused, torch), _ratio(fused, flax)
            goals = GOALS[cell]
            met = all(
                r is not None and r >= goals[peer]
                for peer, r in (("torch", r_torch), ("flax", r_flax))
                if peer in goals
            )
            lines.append(
                f"| {cell.upper()} | {config} | {_fmt(fused)} | {_fmt(torch)} | {_fmt(flax)} "
                f"| {_fmt(r_torch, 2)} | {_fmt(r_flax, 2)} | {_fmt(_ratio(fused, scan), 2)} "
                f"| {'yes' if met else 'no'} | {'' if met else HOLD_BACK.get((cell, config), '')} |"
            )
    return lines


KERNEL_GOALS = {"lstm": 1.2, "gru": 1.0}


def kernel_table(records: list[dict], peak: float) -> list[str]:
    """The compiled CPU loops beside the fused XLA loops and PyTorch, with % of matmul peak.

    The LSTM goal is read with freed memory kept for both sides (the ``malloc`` setting),
    only: glibc's default policy costs PyTorch far more than the kernel (page faults on
    each step's fresh buffers), which flatters the kernel. A run without those rows (a
    budget that dropped PyTorch's, an ``--only`` without them) leaves the goal unjudged."""
    ok = [r for r in records if "error" not in r]
    by = {(r["cell"], r["config"], r["impl"]): r for r in ok if not r.get("setting")}
    kept = {(r["cell"], r["config"], r["impl"]): r for r in ok if r.get("setting") == "malloc"}
    policies = ("torch", "torch-passive")
    lines = [
        "| cell | config | rnnlab kernel | rnnlab fused | PyTorch (best policy) "
        "| kernel / PyTorch | kernel / fused | kernel % of peak | PyTorch % of peak "
        "| kernel, freed memory kept | PyTorch, freed memory kept | kernel / PyTorch, kept "
        "| goal met |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for cell in ("lstm", "gru"):
        for config in ("A", "B", "C"):
            rec = by.get((cell, config, "rnnlab-kernel"))
            if rec is None:
                continue
            kernel, fused = _tps(rec), _tps(by.get((cell, config, "rnnlab-fused")))
            torch = _best(by, cell, config, policies)
            r_torch = _ratio(kernel, torch)
            best_torch = max(
                (by[(cell, config, i)] for i in policies if (cell, config, i) in by),
                key=_tps,
                default=None,
            )
            torch_pct = best_torch and 100 * best_torch["train"]["gflops"] / peak
            kernel_kept = _tps(kept.get((cell, config, "rnnlab-kernel")))
            torch_kept = _best(kept, cell, config, policies)
            r_kept = _ratio(kernel_kept, torch_kept)
            judged = r_kept if cell == "lstm" else r_torch
            met = "-" if judged is None else "yes" if judged >= KERNEL_GOALS[cell] else "no"
            lines.append(
                f"| {cell.upper()} | {config} | {_fmt(kernel)} | {_fmt(fused)} | {_fmt(torch)} "
                f"| {_fmt(r_torch, 2)} | {_fmt(_ratio(kernel, fused), 2)} "
                f"| {_fmt(100 * rec['train']['gflops'] / peak)} | {_fmt(torch_pct)} "
                f"| {_fmt(kernel_kept)} | {_fmt(torch_kept)} "
                f"| {_fmt(r_kept, 2)} | {met} |"
            )
    return lines


def details(records: list[dict], peak: float) -> list[str]:
    lines = [
        "| cell | config | implementation | train tokens/s (median) | train tokens/s (best step) "
        "| train step ms | train CPU ms | forward tokens/s | train GFLOP/s | % of matmul peak "
        "| peak RSS MiB |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in records:
        if "error" in r:
            lines.append(
                f"| {r['cell'].upper()} | {_label(r)} | {r['impl']} | {r['error']} | | | | | | | |"
            )
            continue
        tr = r.get("train")
        lines.append(
            f"| {r['cell'].upper()} | {_label(r)} | {r['impl']} | {_fmt(_tps(r))} "
            f"| {_fmt(tr and tr['tokens_per_s_at_min'])} "
            f"| {_fmt(tr and tr['median_s'] * 1e3, 1)} "
            # Process CPU seconds per step (all its threads): the work, which a loaded
            # machine disturbs far less than the wall time.
            f"| {_fmt(tr and tr.get('cpu_median_s') and tr['cpu_median_s'] * 1e3, 1)} "
            f"| {_fmt(_tps(r, 'forward'))} "
            f"| {_fmt(tr and tr['gflops'])} | {_fmt(tr and 100 * tr['gflops'] / peak)} "
            f"| {_fmt(r['peak_rss_mb'])} |"
        )
    return lines


def malloc_effect(records: list[dict]) -> list[str]:
    """LSTM configs with and without glibc keeping freed memory, per implementation."""
    ok = [r for r in records if r["cell"] == "lstm" and "error" not in r]
    tuned = {(r["config"], r["impl"]): r for r in ok if r.get("setting") == "malloc"}
    if not tuned:
        return []
    plain = {(r["config"], r["impl"]): r for r in ok if not r.get("setting")}
    lines = [
        "| config | implementation | train tokens/s, default malloc "
        "| train tokens/s, freed memory kept | gain | rnnlab fused / this, freed memory kept |",
        "|---|---|---|---|---|---|",
    ]
    for (config, impl), rec in tuned.items():
        base = _tps(plain.get((config, impl)))
        fused = _tps(tuned.get((config, "rnnlab-fused")))
        lines.append(
            f"| {config} | {impl} | {_fmt(base)} | {_fmt(_tps(rec))} "
            f"| {_fmt(_ratio(_tps(rec), base), 2)} | {_fmt(_ratio(fused, _tps(rec)), 2)} |"
        )
    return lines


def long_sequence(records: list[dict]) -> list[str]:
    recs = [r for r in records if r["config"] == "long" and "error" not in r]
    if not recs:
        return []
    base = next((r for r in recs if r["impl"] == "rnnlab-fused"), None)
    lines = [
        "| implementation | train step s | time vs rnnlab fused | peak RSS MiB | under 2 GiB |",
        "|---|---|---|---|---|",
    ]
    for r in recs:
        step = r["train"]["median_s"]
        rel = _ratio(step, base and base["train"]["median_s"])
        lines.append(
            f"| {r['impl']} | {step:.2f} | {_fmt(rel, 2)} | {_fmt(r['peak_rss_mb'])} "
            f"| {'yes' if r['peak_rss_mb'] < 2048 else 'no'} |"
        )
    return lines


def regularizers(recs: list[dict]) -> list[str]:
    if not recs:
        return []
    lines = [
        "| regulariser | cell | ms/step (median) | ms/step (min) | x plain (median) "
        "| x plain (min) |",
        "|---|---|---|---|---|---|",
    ]
    for r in recs:
        lines.append(
            f"| {r.get('technique', r.get('name'))} | {r.get('cell', '')} "
            f"| {_fmt(r.get('ms_per_step'), 2)} | {_fmt(r.get('ms_min'), 2)} "
            f"| {_fmt(r.get('relative_to_plain'), 2)} | {_fmt(r.get('relative_to_plain_min'), 2)} |"
        )
    return lines


E2E_ROWS = {
    "torch": "PyTorch, the same character LM written plainly (benchmarks/e2e_torch.py)",
    "torch-kept": "the same, glibc keeping freed memory (environment variables)",
    "torch-passive": "the same, freed memory kept and `OMP_WAIT_POLICY=PASSIVE`",
    "rnnlab": "`rnnlab train --config experiments/charlm.py`, as users run it",
    "rnnlab-no-kernel": "the same with `RNNLAB_KERNELS=0` (the fused path's XLA loops)",
    "rnnlab-glibc": "the same with `RNNLAB_MALLOC=default` (glibc's default allocator policy)",
    "rnnlab-recipe": "`rnnlab train --config experiments/charlm_regularized.py:recipe`",
}

# What holds an end-to-end goal back when the table misses it (docs/performance.md).
E2E_HOLD_BACK = {
    "rnnlab_vs_torch": "the compiled training step itself: the loop around it (data, "
    "metric transfers) runs at the jitted step's own rate. Inside the step the LSTM's small "
    "per-step products and the rest (embedding gradient, softmax cross-entropy, clipping, "
    "Adam, the non-finite guard) run as many small XLA:CPU kernels; PyTorch also gains more "
    "from kept freed memory (docs/performance.md). Not yet profiled op by op",
    "recipe_vs_rnnlab": "the recipe's extra work per step: weight drop, variational masks, "
    "AR/TAR and the averaged evaluation weights",
}


def end_to_end(e2e: dict) -> list[str]:
    """The end-to-end group: the real command's training throughput beside its peers."""
    from benchmarks.e2e import GOALS, RATIOS

    lines = [
        "| implementation | train tokens/s (median) | step ms (median) | step ms (best window) "
        "| windows |",
        "|---|---|---|---|---|",
    ]
    for name, desc in E2E_ROWS.items():
        if name in e2e:
            r = e2e[name]
            lines.append(
                f"| {desc} | {_fmt(r['tokens_per_second'])} | {_fmt(r['step_ms'], 1)} "
                f"| {_fmt(r.get('best_step_ms'), 1)} | {r.get('windows', '-')} |"
            )
    lines += ["", "| ratio | value | goal | met | what holds it back |", "|---|---|---|---|---|"]
    for key, (a, b) in RATIOS.items():
        value = e2e.get(f"ratio_{key}")
        if value is None:
            continue
        goal = GOALS.get(key)
        met = "-" if goal is None else ("yes" if value >= goal else "no")
        why = E2E_HOLD_BACK.get(key, "") if met == "no" else ""
        goal_text = "-" if goal is None else f">= {goal:.1f}"
        lines.append(f"| {a} / {b} | {value:.2f} | {goal_text} | {met} | {why} |")
    return lines


def _loads(loads) -> str:
    return ", ".join(f"{x:.2f}" for x in loads)


def render(result: dict) -> str:
    m, v = result["machine"], result["versions"]
    peak = result["matmul_peak_gflops"]
    records = result["records"]
    out = [HEADER]
    out.append(
        f"## Latest run: {result['date']}\n\n"
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, {m['platform']}; "
        f"Python {m['python']}.  \n"
        + (
            "The machine hands freed memory back to its host (free page reporting): rows "
            "with glibc's default allocator policy vary from run to run (decision 148).  \n"
            if m.get("free_page_reporting")
            else ""
        )
        + "Versions: "
        + ", ".join(f"{k} {val}" for k, val in v.items() if val)
        + ".  \n"
        f"Load average (1, 5, 15 min) before: {_loads(result['load_before'])}; "
        f"after: {_loads(result['load_after'])}. "
        f"Wall time of the run: {result['wall_s'] / 60:.1f} min.  \n"
        f"Matmul peak, float32 2048^3: jax {peak['jax']:.0f} GFLOP/s, "
        f"torch {peak['torch']:.0f} GFLOP/s (the % column uses the larger).\n"
    )
    for note in result.get("notes", []):
        out.append(f"- {note}")
    if result.get("e2e"):
        e2e = result["e2e"]
        out.append(
            "\n### End to end: the main job against the same model in PyTorch\n\n"
            "Training throughput of the real command (data pipeline, host synchronisation "
            "and metric logging included; start-up, compilation, evaluation and checkpoints "
            f"excluded): {e2e.get('steps', '-')} steps per run, windows of "
            f"{e2e.get('log_every', '-')} steps after the first, {e2e.get('rounds', '-')} "
            "alternating rounds (`benchmarks/e2e.py`). The "
            "character LM: embedding 64, LSTM 256, linear to the 82-symbol vocabulary, Adam, "
            "clipping at 1, batch 32 of 128 steps with the state carried, 2 threads.\n"
        )
        out.extend(end_to_end(e2e))
    out.append("\n### Headline: training throughput (tokens/s, median)\n")
    out.extend(headline(records))
    out.append(
        "\nGoals: LSTM fused >= 1.0x PyTorch and >= 1.5x stock Flax; GRU fused >= 1.0x PyTorch.\n"
    )
    kernel_lines = kernel_table(records, max(peak.values()))
    if len(kernel_lines) > 2:
        out.append(
            "\n### The compiled CPU loops (`rnnlab-kernels`) beside the fused path and PyTorch\n"
        )
        out.extend(kernel_lines)
        out.append(
            "\nGoals: LSTM kernel >= 1.2x PyTorch's best thread policy with freed memory kept "
            "for both sides (- where the run has no such rows), GRU >= 1.0x. % of peak: "
            "training GFLOP/s (matmul work only) over the run's float32 matmul peak.\n"
        )
    long_lines = long_sequence(records)
    if long_lines:
        cfg = CONFIGS["long"]
        out.append(
            f"\n### Long sequences: LSTM, batch {cfg.batch}, time {cfg.time}, input "
            f"{cfg.input}, hidden {cfg.hidden} (training)\n"
        )
        out.extend(long_lines)
    malloc = malloc_effect(records)
    if malloc:
        out.append(
            "\n### LSTM with glibc keeping freed memory\n\n"
            "`MALLOC_MMAP_THRESHOLD_=2**30 MALLOC_TRIM_THRESHOLD_=2**32` for every peer: "
            "no page faults on each step's fresh temporaries (docs/performance.md).\n"
        )
        out.extend(malloc)
    out.append("\n### All measurements\n")
    out.extend(details(records, max(peak.values())))
    out.append("\nImplementations:\n")
    seen = {r["impl"] for r in records}
    for name, (_, desc) in IMPLEMENTATIONS.items():
        if name in seen:
            out.append(f"- `{name}`: {desc}")
    reg = regularizers(result.get("regularizers", []))
    if reg:
        out.append("\n### Regularisers: cost per training step (`benchmarks/regularizers.py`)\n")
        out.extend(reg)
    if result.get("families"):
        from benchmarks.families import table

        out.append("\n### Recurrent families: training throughput (`benchmarks/families.py`)\n")
        out.extend(table(result["families"]))
    return "\n".join(out) + "\n"


def write_readme(result: dict, path: Path) -> None:
    Path(path).write_text(render(result))
