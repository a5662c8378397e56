"""A XenStore transaction: the node operations inside one TRANSACTION_START ... TRANSACTION_END."""

from __future__ import annotations

import contextlib
from types import TracebackType

from virtkit import ConnectionClosed, InvalidArgument, VirtError

from ._conn import Conn
from ._ops import Ops
from ._wire import Op

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ._client import Client

__all__ = ["Transaction"]


class Transaction(Ops):
    """An open transaction. Reads see a snapshot plus this transaction's own writes.

    ``commit()`` raises TransactionConflict on EAGAIN; prefer :meth:`Client.transact`, which
    retries. A transaction does not survive a reconnect: its calls then raise ConnectionClosed.
    """

    __slots__ = ("_client", "_conn", "_ended", "id")

    def __init__(self, client: Client, conn: Conn, tx_id: int) -> None:
        self._client = client
        self._conn = conn
        self.id = tx_id
        self._ended = False

    def __repr__(self) -> str:
        return f"<virtkit_xenstore.Transaction {self.id}{' ended' if self._ended else ''}>"

    def _live(self) -> Conn:
        if self._ended:
            raise InvalidArgument(f"xenstore: transaction {self.id} has ended")
        if self._conn.broken is not None:
            raise ConnectionClosed(
                f"xenstore: transaction {self.id} was lost with its connection ({self._conn.broken.message})"
            )
        return self._conn

    def _request(self, op: Op, payload: bytes, path: str | None) -> bytes:
        client = self._client
        return self._live().call(op, payload, self.id, path, client._left(client._until()))

    def _request_many(self, requests: list[tuple[int, bytes, str | None]]) -> list[bytes | VirtError]:
        client = self._client
        return self._live().call_many(requests, self.id, client._left(client._until()))

    def _bounded(self) -> contextlib.AbstractContextManager[None]:
        return self._client.deadline()

    def _end(self, commit: bool) -> None:
        try:
            self._request(Op.TRANSACTION_END, b"T\0" if commit else b"F\0", None)
        finally:
            self._ended = True

    def commit(self) -> None:
        self._end(True)

    def abort(self) -> None:
        self._end(False)

    @property
    def ended(self) -> bool:
        return self._ended

    def __enter__(self) -> Transaction:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._ended:
            return
        if exc_type is None:
            self.commit()
        elif self._conn.broken is None:
            try:
                self.abort()
            except VirtError:
                pass  # the original error matters more
