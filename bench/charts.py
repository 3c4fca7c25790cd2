#!/usr/bin/env python3
"""Charts (SVG) of benchmark reports written by bench/run.py.

Reads the raw per-run figures each report carries (its JSON block) and
draws, with no library beyond Python's own:

  times-<name>.svg   one panel per workload row (workloads 1 to 3): the
                     median time of each system, so the systems compare at
                     a glance whatever the row's scale
  wan-throughput.svg workload 1's upload and download throughput (MiB/s,
                     medians) against the round trip to the server, one
                     line per system, from every report given (loopback
                     reports count as 0 ms)

    python3 bench/charts.py bench/RESULTS.md bench/RESULTS-wan-50ms.md \\
        bench/RESULTS-wan-150ms.md --out bench/charts
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from html import escape
from pathlib import Path

SYSTEMS = ("direct", "gateway", "rclone")
COLOURS = {"direct": "#7f7f7f", "gateway": "#1f77b4", "rclone": "#ff7f0e"}
LABELS = {"direct": "OpenSSH sftp straight to sshd", "gateway": "gateway", "rclone": "rclone serve sftp"}
MiB = 1024 * 1024


def raw_figures(report: Path) -> dict:
    """The JSON block of a report ("Raw per-run figures")."""
    m = re.search(r"## Raw per-run figures\s*```json\n(.*?)\n```", report.read_text(), re.S)
    if not m:
        raise SystemExit(f"{report}: no raw figures (a report of bench/run.py has a ```json block)")
    return json.loads(m.group(1))


def med(xs):
    return statistics.median(xs) if xs else None


def rows_of(results: dict) -> list[tuple[str, dict]]:
    """(row label, {system: median seconds}) for workloads 1 to 3."""
    rows = []
    w1 = results.get("w1")
    if w1:
        size = f"{w1['size'] // MiB} MiB"
        for cipher, per in w1["ciphers"].items():
            for d, word in (("up", "put"), ("down", "get")):
                rows.append((f"{word} {size} ({cipher.split('@')[0]})", {s: med(per[s][d]) for s in SYSTEMS if s in per}))
    w2 = results.get("w2")
    if w2:
        n = w2["files"]
        for ph, label in (("up", f"put -r {n} × 4 KiB"), ("list", f"ls -l {w2.get('listed', n)} entries"),
                          ("down", f"get -r {n} × 4 KiB")):
            rows.append((label, {s: med(w2["runs"][s][ph]) for s in SYSTEMS}))
    w3 = results.get("w3")
    if w3:
        rows.append((f"{w3['clients']} clients × {w3['size'] // MiB} MiB",
                     {s: med(w3["runs"][s]["total"]) for s in SYSTEMS}))
    return rows


def svg(width: int, height: int, body: list[str]) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">\n'
            f'<rect width="100%" height="100%" fill="white"/>\n' + "\n".join(body) + "\n</svg>\n")


def text(x, y, s, anchor="start", size=12, weight="normal", fill="#000") -> str:
    return (f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" font-size="{size}" '
            f'font-weight="{weight}" fill="{fill}">{escape(s)}</text>')


def legend(x: float, y: float) -> list[str]:
    out = []
    for s in SYSTEMS:
        out.append(f'<rect x="{x}" y="{y - 10}" width="12" height="12" fill="{COLOURS[s]}"/>')
        out.append(text(x + 16, y, LABELS[s]))
        x += 28 + 7 * len(LABELS[s])
    return out


def times_chart(title: str, rows: list[tuple[str, dict]]) -> str:
    """One panel per row; bars scaled to the row's slowest system."""
    label_w, bar_w, bar_h, gap = 190, 330, 14, 16
    width = label_w + bar_w + 220
    body = [text(10, 22, title, size=14, weight="bold")]
    body += legend(10, 44)
    y = 64
    for label, per in rows:
        body.append(text(10, y + 1.5 * bar_h + 4, label))
        top = max((v for v in per.values() if v is not None), default=None)
        for i, s in enumerate(SYSTEMS):
            v = per.get(s)
            by = y + i * bar_h
            if v is None or not top:
                body.append(text(label_w, by + bar_h - 3, "not measured", size=10, fill="#888"))
                continue
            w = max(1.0, bar_w * v / top)
            body.append(f'<rect x="{label_w}" y="{by:.1f}" width="{w:.1f}" height="{bar_h - 2}" fill="{COLOURS[s]}"/>')
            body.append(text(label_w + w + 4, by + bar_h - 3, f"{v:.2f} s", size=10))
        y += 3 * bar_h + gap
    body.append(text(10, y + 4, "Median time in seconds (shorter is faster); each row is scaled to its own slowest "
                     "system.", size=10, fill="#555"))
    return svg(width, y + 16, body)


def wan_chart(points: dict) -> str:
    """points[direction][system] = [(rtt_ms, MiB/s)]; two panels side by side."""
    pw, ph, ml, mt = 300, 220, 50, 60
    width = 2 * (pw + ml + 20) + 10
    body = [text(10, 22, "Workload 1 throughput against the round trip to the server", size=14, weight="bold")]
    body += legend(10, 44)
    rtts = sorted({r for d in points.values() for pts in d.values() for r, _ in pts})
    top = max((v for d in points.values() for pts in d.values() for _, v in pts), default=1.0)
    top = top * 1.1
    x_max = max(rtts) if rtts and max(rtts) > 0 else 1
    for k, (direction, word) in enumerate((("up", "upload"), ("down", "download"))):
        ox = 10 + k * (pw + ml + 20) + ml
        body.append(text(ox + pw / 2, mt - 2, word, anchor="middle", weight="bold"))
        body.append(f'<rect x="{ox}" y="{mt}" width="{pw}" height="{ph}" fill="none" stroke="#ccc"/>')
        for frac in (0, 0.25, 0.5, 0.75, 1):
            yy = mt + ph - frac * ph
            body.append(f'<line x1="{ox}" x2="{ox + pw}" y1="{yy:.1f}" y2="{yy:.1f}" stroke="#eee"/>')
            body.append(text(ox - 4, yy + 4, f"{frac * top:.0f}", anchor="end", size=10))
        for r in rtts:
            xx = ox + pw * r / x_max
            body.append(text(xx, mt + ph + 14, f"{r:g} ms", anchor="middle", size=10))
        body.append(text(ox + pw / 2, mt + ph + 30, "round trip to the server", anchor="middle", size=10))
        body.append(text(ox - 38, mt + ph / 2, "MiB/s", anchor="middle", size=10))
        for s in SYSTEMS:
            pts = sorted(points.get(direction, {}).get(s, []))
            xy = [(ox + pw * r / x_max, mt + ph - ph * v / top) for r, v in pts]
            if len(xy) > 1:
                body.append(f'<polyline fill="none" stroke="{COLOURS[s]}" stroke-width="2" points="'
                            + " ".join(f"{x:.1f},{y:.1f}" for x, y in xy) + '"/>')
            for (x, y), (_, v) in zip(xy, pts):
                body.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3.5" fill="{COLOURS[s]}"/>')
                body.append(text(x + 5, y - 5, f"{v:.0f}", size=9, fill=COLOURS[s]))
    body.append(text(10, mt + ph + 50, "Median MiB/s of one file (1 GiB on loopback, 128 MiB over the relayed "
                     "links), default cipher; higher is faster.", size=10, fill="#555"))
    body.append(text(10, mt + ph + 64, "Each round trip's points come from its own report (see it for the rclone "
                     "version and the machine's load).", size=10, fill="#555"))
    return svg(width, mt + ph + 76, body)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("reports", nargs="+", type=Path)
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "charts")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    points: dict = {"up": {}, "down": {}}
    for report in args.reports:
        results = raw_figures(report)
        rows = rows_of(results)
        rtt = (results.get("w1") or results.get("w2") or {}).get("rtt_ms", 0)
        where = f"{rtt:g} ms round trip to sshd" if rtt else "loopback"
        if rows:
            path = args.out / f"times-{report.stem}.svg"
            path.write_text(times_chart(f"{report.name}: median time per workload ({where})", rows))
            print(f"wrote {path}")
        w1 = results.get("w1")
        if w1 and "default" in w1["ciphers"]:
            per = w1["ciphers"]["default"]
            for d in ("up", "down"):
                for s in SYSTEMS:
                    t = med(per.get(s, {}).get(d, []))
                    if t:
                        points[d].setdefault(s, []).append((rtt, w1["size"] / MiB / t))
    if any(len(pts) > 1 for d in points.values() for pts in d.values()):
        path = args.out / "wan-throughput.svg"
        path.write_text(wan_chart(points))
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
