"""What a sweep shows while it runs: a progress bar or one line per cell, on stderr."""

from __future__ import annotations

import sys
from typing import Any, TextIO

from nablanet.studies._sweep_cell import Cell


class Progress:
    """A tqdm bar over cells when tqdm is installed and stderr is a terminal, else one line per
    finished or failed cell on stderr; nothing when quiet."""

    def __init__(self, total: int, finished: int, quiet: bool) -> None:
        self.total, self.count, self.quiet = total, finished, quiet
        self.stream: TextIO = sys.stderr
        self.bar: Any = None
        if quiet:
            return
        if self.stream.isatty():
            try:
                from tqdm import tqdm

                self.bar = tqdm(total=total, initial=finished, unit="cell", desc="sweep", file=self.stream)
            except ImportError:
                pass
        if finished and self.bar is None:
            self._line(f"{finished} of {total} cells already finished")

    def _line(self, text: str) -> None:
        if self.quiet:
            return
        if self.bar is not None:
            self.bar.write(text, file=self.stream)
        else:
            print(text, file=self.stream, flush=True)

    def done(self, cell: Cell, seconds: float) -> None:
        self.count += 1
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix_str(cell.label(), refresh=True)
        else:
            self._line(f"[{self.count}/{self.total}] {cell.label()}  ({seconds:.1f} s)")

    def failed(self, cell: Cell, error: str, retry: bool) -> None:
        what = "failed, retrying" if retry else "failed"
        self._line(f"[{self.count}/{self.total}] {cell.label()} {what}: {error.splitlines()[0]}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
