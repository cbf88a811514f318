"""What ``fit`` returns: one record per epoch, and why training ended."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from nablanet._validation import a_type


@dataclass
class History:
    """Per-epoch records: ``epoch``, ``loss`` (mean training loss over the epoch's batches),
    ``accuracy`` (training, on the batches as they were seen), ``val_loss``, ``val_error`` (0-1 error),
    ``val_accuracy``, ``lr`` (at the epoch's end), ``seconds``, plus any metric a callback adds.

    ``history["loss"]`` gives a column as a list (Keras' ``history.history["loss"]``).
    ``stop_reason`` says why training ended early, if it did. After Ctrl-C (``KeyboardInterrupt``)
    inside ``fit``, ``interrupted`` is True and ``interrupted_at`` says where training stood:
    ``{"epoch": e, "batch": b, "batches": n}``, where ``b`` batches of epoch ``e`` (of ``n``) were
    completed; the records hold the completed epochs only.

    A History is rebuilt from what ``to_records`` gave (a checkpoint stores that) with
    ``History.from_records(records, stop_reason=...)``; ``fit(..., history=h, initial_epoch=k)``
    continues one.
    """

    records: list[dict[str, Any]] = field(default_factory=list)
    stop_reason: str | None = None
    interrupted_at: dict[str, int] | None = None

    @property
    def interrupted(self) -> bool:
        """Whether ``fit`` ended on a ``KeyboardInterrupt`` (see ``interrupted_at``)."""
        return self.interrupted_at is not None

    @classmethod
    def from_records(
        cls, records: Iterable[Mapping[str, Any]], stop_reason: str | None = None,
        interrupted_at: Mapping[str, int] | None = None,
    ) -> History:
        """The History whose ``to_records()`` is ``records`` (each a dict with an int ``epoch``)."""
        if isinstance(records, str | bytes | Mapping) or not isinstance(records, Iterable):
            raise TypeError(
                f"History.from_records received {a_type(records)}; expected a list of dicts, one per "
                "epoch, as History.to_records() gives."
            )
        rows = list(records)
        for i, r in enumerate(rows):
            epoch = r.get("epoch") if isinstance(r, Mapping) else None
            if isinstance(epoch, bool) or not isinstance(epoch, int):
                got = f"a {type(r).__name__}" if not isinstance(r, Mapping) else f"epoch={epoch!r}"
                raise ValueError(
                    f"History.from_records: record {i} has {got}; expected a dict with an int 'epoch', "
                    "as History.to_records() gives."
                )
        if stop_reason is not None and not isinstance(stop_reason, str):
            raise TypeError(f"History.from_records(stop_reason=...) received {a_type(stop_reason)}; "
                            "expected a str or None")
        return cls([dict(r) for r in rows], stop_reason, None if interrupted_at is None else dict(interrupted_at))

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
