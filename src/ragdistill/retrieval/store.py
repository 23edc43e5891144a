"""On-disk passage store (SQLite): FAISS row i <-> passage i, without the corpus text in memory.

One table ``passages(row INTEGER PRIMARY KEY, id TEXT UNIQUE, title TEXT, text TEXT)``;
``row`` is the FAISS row, so ``get(rows)`` is a primary-key lookup. A loaded store is
opened read-only; `iter_range` streams rows in order for re-embedding (refresh).
`PassageIndex.load` checks the file's size and sha256 against the index manifest before it
is opened; a read that still meets a damaged page (a load with ``verify=False``) raises an
`InputError` naming the file instead of a bare sqlite3 error.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from ragdistill.data.types import Passage
from ragdistill.errors import InputError

STORE_NAME = "passages.sqlite"


class DuplicatePassageId(InputError):
    """Two passages with one id; `first` and `second` are their 0-based positions in the input."""

    HINT = "ids must be unique within a corpus (give the passages distinct ids, or let chunking number them)"

    def __init__(self, passage_id: str, first: int, second: int):
        self.passage_id, self.first, self.second = passage_id, first, second
        super().__init__(
            f"passage id '{passage_id}' occurs twice (passages #{first + 1} and #{second + 1} of the input): "
            + self.HINT
        )


_SCHEMA = "CREATE TABLE passages (row INTEGER PRIMARY KEY, id TEXT NOT NULL, title TEXT NOT NULL, text TEXT NOT NULL)"


class PassageStore:
    """Rows of passages in a SQLite file."""

    def __init__(self, path: str | Path, conn: sqlite3.Connection, writable: bool):
        self.path = Path(path)
        self._conn = conn
        self.writable = writable
        self._count: int | None = None

    @classmethod
    def create(cls, path: str | Path) -> PassageStore:
        """A new, empty store (the file must not exist yet)."""
        path = Path(path)
        if path.exists():
            raise InputError("passage store already exists; build into a fresh directory", path)
        conn = sqlite3.connect(str(path), check_same_thread=False)
        conn.execute("PRAGMA journal_mode=OFF")  # the whole directory is committed atomically instead
        conn.execute("PRAGMA synchronous=OFF")
        conn.execute(_SCHEMA)
        # unique from the first row: a duplicate stops the build before its embeddings are computed
        conn.execute("CREATE UNIQUE INDEX passages_id ON passages (id)")
        conn.commit()
        return cls(path, conn, writable=True)

    @classmethod
    def open(cls, path: str | Path) -> PassageStore:
        """Open an existing store read-only."""
        path = Path(path)
        if not path.is_file():
            raise InputError("passage store is missing: the index directory is incomplete; rebuild it", path)
        try:
            conn = sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True, check_same_thread=False)
            conn.execute("SELECT count(*) FROM passages").fetchone()
        except sqlite3.DatabaseError as exc:
            raise InputError(f"not a readable passage store ({exc}); rebuild the index", path) from None
        return cls(path, conn, writable=False)

    def add(self, passages: Sequence[Passage], start_row: int) -> None:
        """Append passages as rows start_row, start_row+1, ..."""
        try:
            self._conn.executemany(
                "INSERT INTO passages (row, id, title, text) VALUES (?, ?, ?, ?)",
                ((start_row + i, str(p.id), p.title or "", p.text) for i, p in enumerate(passages)),
            )
        except sqlite3.IntegrityError:
            raise self._duplicate(passages, start_row) from None
        self._count = None

    def _duplicate(self, passages: Sequence[Passage], start_row: int) -> DuplicatePassageId:
        """The first passage of this batch whose id an earlier passage already has."""
        seen: dict[str, int] = {}
        for i, p in enumerate(passages):
            pid = str(p.id)
            if pid in seen:
                return DuplicatePassageId(pid, seen[pid], start_row + i)
            seen[pid] = start_row + i
            hit = self._conn.execute("SELECT row FROM passages WHERE id = ? AND row < ?", (pid, start_row)).fetchone()
            if hit is not None:
                return DuplicatePassageId(pid, int(hit[0]), start_row + i)
        raise AssertionError("IntegrityError without a duplicate id")  # pragma: no cover

    def finish(self) -> None:
        """Commit the rows and close the writer (ids were checked for duplicates as they came)."""
        self._conn.commit()
        self._conn.close()

    def close(self) -> None:
        try:
            self._conn.close()
        except sqlite3.Error:
            pass

    def _damaged(self, exc: sqlite3.DatabaseError) -> InputError:
        return InputError(
            f"passage store is damaged ({exc}); rebuild the index (a load with verify on detects this "
            "before any search)",
            self.path,
        )

    def __len__(self) -> int:
        if self._count is None:
            try:
                self._count = int(self._conn.execute("SELECT count(*) FROM passages").fetchone()[0])
            except sqlite3.DatabaseError as exc:
                raise self._damaged(exc) from None
        return self._count

    def get(self, rows: Iterable[int]) -> list[Passage]:
        """Passages of the given rows, in the given order (duplicates allowed)."""
        rows = [int(r) for r in rows]
        if not rows:
            return []
        found: dict[int, Passage] = {}
        uniq = sorted(set(rows))
        for i in range(0, len(uniq), 900):  # stay under SQLite's bound-parameter limit
            chunk = uniq[i : i + 900]
            q = f"SELECT row, id, title, text FROM passages WHERE row IN ({','.join('?' * len(chunk))})"
            try:
                for row, pid, title, text in self._conn.execute(q, chunk):
                    found[row] = Passage(pid, title, text)
            except sqlite3.DatabaseError as exc:
                raise self._damaged(exc) from None
        missing = [r for r in rows if r not in found]
        if missing:
            raise IndexError(f"row {missing[0]} is not in the passage store ({len(self)} rows)")
        return [found[r] for r in rows]

    def row_of(self, passage_id: str) -> int | None:
        """FAISS row of a passage id, or None."""
        r = self._conn.execute("SELECT row FROM passages WHERE id = ?", (str(passage_id),)).fetchone()
        return None if r is None else int(r[0])

    def iter_range(self, start: int = 0, stop: int | None = None, batch: int = 10_000) -> Iterator[list[Passage]]:
        """Passages of rows [start, stop) in row order, in lists of `batch`."""
        stop = len(self) if stop is None else stop
        cur = start
        while cur < stop:
            end = min(stop, cur + batch)
            try:
                res = self._conn.execute(
                    "SELECT id, title, text FROM passages WHERE row >= ? AND row < ? ORDER BY row", (cur, end)
                ).fetchall()
            except sqlite3.DatabaseError as exc:
                raise self._damaged(exc) from None
            yield [Passage(pid, title, text) for pid, title, text in res]
            cur = end
