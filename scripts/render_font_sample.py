"""Render docs/hangul-chart.png: a chart drawn the way the model is told to, with the bot's Hangul font.

Needs matplotlib, which the bot itself does not use: `pip install matplotlib` then
`python scripts/render_font_sample.py`.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib import font_manager

from bot.turn.chart_font import FONT_FAMILY, FONT_FILENAME, font_bytes

OUT = Path(__file__).resolve().parents[1] / "docs" / "hangul-chart.png"


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / FONT_FILENAME  # as /mnt/data/<name> in a container
        path.write_bytes(font_bytes())
        font_manager.fontManager.addfont(str(path))
        plt.rcParams["font.family"] = FONT_FAMILY
        plt.rcParams["axes.unicode_minus"] = False
        months = ["1월", "2월", "3월", "4월", "5월", "6월"]
        fig, ax = plt.subplots(figsize=(6, 3.2), dpi=100)
        ax.plot(months, [120, 135, 150, 142, 171, 188], marker="o", label="서울")
        ax.plot(months, [80, 92, 88, 101, 97, 115], marker="s", label="부산")
        ax.set_title("지역별 월 매출 (단위: 백만 원)")
        ax.set_xlabel("월")
        ax.set_ylabel("매출")
        ax.legend(title="지역")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(OUT)
    print(f"{OUT} ({OUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
