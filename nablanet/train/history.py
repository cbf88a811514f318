"""What ``fit`` returns: one record per epoch."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class History:
    """Per-epoch records: ``epoch``, ``loss`` (mean training loss over the epoch's batches),
    ``accuracy`` (training, on the batches as they were seen), ``val_loss``, ``val_error`` (0-1 error),
    ``val_accuracy``, ``lr`` (at the epoch's end), ``seconds``, plus any metric a callback adds.

    ``history["loss"]`` gives a column as a list (Keras' ``history.history["loss"]``).
    ``stop_reason`` says why training ended early, if it did.
    """

    records: list[dict[str, Any]] = field(default_factory=list)
    stop_reason: str | None = None

    def append(self, record: dict[str, Any]) -> None:
        self.records.append(dict(record))

    def __getitem__(self, key: str) -> list[Any]:
        if not self.records or key not in self.records[0]:
            known = sorted(self.records[0]) if self.records else []
            raise KeyError(f"history has no column {key!r}; columns are {known}")
        return [r.get(key) for r in self.records]

    def __len__(self) -> int:
        return len(self.records)

    @property
    def history(self) -> dict[str, list[Any]]:
        """Columns as lists, as Keras' ``History.history``."""
        keys: list[str] = []
        for r in self.records:
            keys += [k for k in r if k not in keys]
        return {k: [r.get(k) for r in self.records] for k in keys}

    def to_records(self) -> list[dict[str, Any]]:
        """A list of dicts, one per epoch (copies)."""
        return [dict(r) for r in self.records]

    def to_pandas(self) -> Any:
        """A pandas DataFrame with one row per epoch (pandas is optional: imported here)."""
        try:
            import pandas as pd
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError("History.to_pandas needs pandas: pip install pandas (or use to_records())") from exc
        return pd.DataFrame.from_records(self.to_records())
