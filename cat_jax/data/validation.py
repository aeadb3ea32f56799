"""Reading and checking problem files: jsonl with file:line errors, SPEC §3.1 ids and selection, reports.

Every prepared dataset carries a validation report (records kept and rejected per split and reason, problems
shared between splits by hash of whitespace-collapsed text, the selection applied); the builders in
:mod:`cat_jax.data.builders` persist it in their ``DatasetInfo`` metadata.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import random
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

from absl import logging


@dataclasses.dataclass(frozen=True)
class JsonlReport:
    """Records kept and records rejected (by reason) while reading one jsonl file."""

    path: str
    kept: int
    rejected: dict[str, int]


def norm_hash(text: str) -> str:
    """SHA-256 of whitespace-collapsed text: the duplicate-problem key."""
    return hashlib.sha256(" ".join(text.split()).encode()).hexdigest()


def problem_id(split: str, index: int, problem: str) -> str:
    """SPEC §3.1 record id ``split:index:sha256(problem)[:12]`` (index = row in the original split)."""
    return f"{split}:{index}:{hashlib.sha256(problem.encode()).hexdigest()[:12]}"


def read_jsonl(
    path: Path,
    fields: Sequence[str],
    max_chars: int = 20_000,
    check: Callable[[dict], str | None] | None = None,
) -> tuple[list[tuple[int, dict]], JsonlReport]:
    """``(row, record)`` pairs of a jsonl file; a malformed line raises naming file:line; failures counted.

    Rows are numbered from 0 over non-blank lines, rejected rows included, so ids stay stable under filtering.
    A record fails ``too_long`` when its ``fields`` hold more than ``max_chars`` characters, or the reason
    ``check`` returns; a ``ValueError`` raised by ``check`` (a record no run could use, such as an empty
    reference answer) stops the read, naming file:line.
    """
    if not path.is_file():
        raise FileNotFoundError(f"missing file {path}")
    kept, rejected, row = [], {}, -1
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            row += 1
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{lineno}: malformed json ({e.msg})") from None
            if not isinstance(rec, dict) or any(not isinstance(rec.get(k), str) for k in fields):
                raise ValueError(f"{path}:{lineno}: expected an object with string fields {list(fields)}")
            reason = "too_long" if sum(len(rec[k]) for k in fields) > max_chars else None
            try:
                reason = reason or (check(rec) if check else None)
            except ValueError as e:
                raise ValueError(f"{path}:{lineno}: {e}") from None
            if reason:
                rejected[reason] = rejected.get(reason, 0) + 1
                continue
            kept.append((row, rec))
    report = JsonlReport(str(path), len(kept), rejected)
    if rejected:
        logging.warning("%s: kept %d records, rejected %s", path, len(kept), rejected)
    return kept, report


def cross_split_duplicates(splits: Mapping[str, Sequence[str]]) -> dict[tuple[str, str], int]:
    """Number of problems shared (by normalised hash) between each pair of splits."""
    hashes = {k: {norm_hash(t) for t in v} for k, v in splits.items()}
    names = sorted(hashes)
    return {(a, b): len(hashes[a] & hashes[b]) for i, a in enumerate(names) for b in names[i + 1 :]}


def select_problems(
    problems: Sequence[str],
    count: int | None,
    *,
    levels: Sequence[str | None] | None = None,
    keep_levels: Collection[str] | None = None,
    offset: int = 0,
    seed: int = 42,
) -> list[int]:
    """SPEC §3.1 selection: indices (into ``problems``) of the chosen records, in selection order.

    Keep the records in their original order, drop those whose level is not in ``keep_levels`` (when given),
    shuffle the eligible indices with CPython's ``random.Random(seed).shuffle`` (the permutation depends only
    on the list length, so shuffling indices equals shuffling the records), take the first
    ``offset + count`` and drop the first ``offset`` (RL prompts; ``offset=0`` otherwise). ``count=None``
    takes every eligible record after ``offset``. Asking for more than are eligible is an error, and so is a
    problem repeated (same whitespace-collapsed text) within the selection.

    >>> select_problems(["a", "b", "c", "d"], 2, levels=["L1", "L2", "L1", "L1"], keep_levels={"L1"})
    [2, 0]
    """
    if levels is not None and len(levels) != len(problems):
        raise ValueError(f"levels has {len(levels)} entries but problems has {len(problems)}")
    if keep_levels is not None and levels is None:
        raise ValueError("keep_levels needs levels (one per problem)")
    if offset < 0 or (count is not None and count < 0):
        raise ValueError(f"offset and count must be >= 0, got offset={offset}, count={count}")
    eligible = [i for i in range(len(problems)) if keep_levels is None or levels[i] in keep_levels]
    random.Random(seed).shuffle(eligible)
    need = len(eligible) if count is None else offset + count
    if need > len(eligible) or offset > len(eligible):
        where = f" with level in {sorted(keep_levels)}" if keep_levels is not None else ""
        raise ValueError(
            f"requested offset + count = {offset} + {count} problems but only {len(eligible)} are "
            f"eligible{where}"
        )
    chosen = eligible[offset:need]
    seen: dict[str, int] = {}
    for i in chosen:
        j = seen.setdefault(norm_hash(problems[i]), i)
        if j != i:
            raise ValueError(f"problem {i} repeats problem {j} within the selection (same normalised text)")
    return chosen


def validation_report(
    kept: Mapping[str, int],
    rejected: Mapping[str, Mapping[str, int]],
    texts: Mapping[str, Sequence[str]],
    **extra: Any,
) -> dict[str, Any]:
    """JSON-ready report persisted with a prepared dataset; cross-split duplicates are also logged."""
    dups = cross_split_duplicates(texts)
    for (a, b), n in dups.items():
        if n:
            logging.warning("%d problems appear in both %s and %s", n, a, b)
    return {
        "kept": dict(kept),
        "rejected": {k: dict(v) for k, v in rejected.items()},
        "duplicates": {f"{a}/{b}": n for (a, b), n in dups.items()},
        **extra,
    }
