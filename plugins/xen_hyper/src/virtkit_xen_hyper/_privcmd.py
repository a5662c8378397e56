"""The kernel side: /dev/xen/privcmd's hypercall ioctl and hypercall-safe buffers.

Xen reads and writes the structs a hypercall points to through the caller's virtual address,
and cannot take a page fault for us: a page that is not present (never touched, copied on write
after fork, being migrated) makes the hypercall fail with EFAULT. So every buffer Xen touches
lives in pages from /dev/xen/hypercall (pinned by the kernel), or, on kernels without it, in
anonymous locked pages not inherited on fork, with a retry on EFAULT as libxc does. Only the
48-byte ``privcmd_hypercall`` itself may be ordinary memory: the kernel copies it.
"""

from __future__ import annotations

import errno
import fcntl
import functools
import mmap
import os
import struct
from collections.abc import Callable

from ._plugin import PRIVCMD_DEVICES

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "HYPERCALL_DEVICE",
    "IOCTL_PRIVCMD_HYPERCALL",
    "PAGE_SIZE",
    "PRIVCMD_DEVICES",
    "HypercallBuffer",
    "Privcmd",
]

#: _IOC(_IOC_NONE, 'P', 0, sizeof(struct privcmd_hypercall)) on x86_64 and arm64.
IOCTL_PRIVCMD_HYPERCALL = 0x00305000
HYPERCALL_DEVICE = "/dev/xen/hypercall"
PAGE_SIZE = 4096  # Xen's page size on every architecture it supports
_MAP_LOCKED = 0x2000  # x86 and arm64 Linux; the mmap module does not export it
_EFAULT_RETRIES = 2  # libxc's do_domctl_retry_efault
_CALL = struct.Struct("<6Q")  # struct privcmd_hypercall: op, arg[5]


class HypercallBuffer:
    """Whole pages Xen may access by virtual address; ``addr`` is stable until ``close()``."""

    __slots__ = ("_anchor", "addr", "mem", "pinned", "size")

    def __init__(self, pages: int, *, device: str | None = HYPERCALL_DEVICE) -> None:
        import ctypes  # only here: the one place an address is taken

        self.size = pages * PAGE_SIZE
        mem: mmap.mmap | None = None
        if device is not None:
            try:
                fd = os.open(device, os.O_RDWR | os.O_CLOEXEC)
            except FileNotFoundError:
                fd = -1  # kernel without privcmd-buf (< 4.18): anonymous pages below
            if fd >= 0:
                try:
                    # The kernel backs this with zeroed pages it keeps pinned.
                    mem = mmap.mmap(fd, self.size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
                finally:
                    os.close(fd)  # the mapping keeps the device open
        self.pinned = mem is not None
        if mem is None:
            mem = _anonymous_locked(self.size)
        self.mem = mem
        # from_buffer exports the mmap, so it cannot be unmapped while the address is in use.
        self._anchor: Any = ctypes.c_char.from_buffer(mem)
        self.addr: int = ctypes.addressof(self._anchor)

    def close(self) -> None:
        if self._anchor is None:
            return
        self._anchor = None  # release the export first, or mmap.close() raises BufferError
        self.addr = 0
        self.mem.close()

    def __repr__(self) -> str:
        kind = "pinned" if self.pinned else "locked"
        return f"<HypercallBuffer {self.size // PAGE_SIZE} {kind} page(s) at {self.addr:#x}>"


def _anonymous_locked(size: int) -> mmap.mmap:
    flags = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS
    prot = mmap.PROT_READ | mmap.PROT_WRITE
    try:
        mem = mmap.mmap(-1, size, flags | _MAP_LOCKED, prot)
    except OSError:
        # Over RLIMIT_MEMLOCK: unlocked pages still work, the EFAULT retry covers the rare miss.
        mem = mmap.mmap(-1, size, flags, prot)
    # A forked child must not share these pages: copy-on-write would unmap them from us.
    mem.madvise(mmap.MADV_DONTFORK)
    for off in range(0, size, PAGE_SIZE):
        mem[off] = 0  # fault every page in now, not inside a hypercall
    return mem


class Privcmd:
    """An open privcmd device: ``call(op, a0, a1)`` issues one hypercall and returns its result.

    A negative Xen error arrives as OSError with ``errno = -rc``. EFAULT is retried twice for
    buffers the kernel does not pin.
    """

    __slots__ = ("_args", "_fd", "_retries", "path")

    def __init__(self, paths: tuple[str, ...] = PRIVCMD_DEVICES) -> None:
        last: OSError | None = None
        for path in paths:
            try:
                self._fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
            except OSError as exc:
                # libxencall tries the next path on these; anything else (EACCES) is final.
                if exc.errno not in (errno.ENOENT, errno.ENXIO, errno.ENODEV):
                    raise
                last = exc
                continue
            self.path = path
            break
        else:
            assert last is not None
            raise last
        self._args = bytearray(_CALL.size)
        self._retries = _EFAULT_RETRIES

    def set_pinned(self, pinned: bool) -> None:
        """Buffers from /dev/xen/hypercall never fault: no retry needed."""
        self._retries = 0 if pinned else _EFAULT_RETRIES

    def prepared(self, op: int, a0: int = 0, a1: int = 0) -> Callable[[], int]:
        """The hypercall ``op(a0, a1)`` as a function of no arguments, packed once: the hot path
        of a query repeated with the same buffer (physinfo). Buffers the kernel does not pin get
        ``call`` itself, with its EFAULT retries."""
        if self._retries:
            return functools.partial(self.call, op, a0, a1)
        args = bytearray(_CALL.size)
        _CALL.pack_into(args, 0, op, a0, a1, 0, 0, 0)
        ioctl = fcntl.ioctl

        def issue() -> int:
            # self._fd, not a copy: after close() it is -1 (EBADF), never a reused descriptor
            rc: int = ioctl(self._fd, IOCTL_PRIVCMD_HYPERCALL, args, True)
            return rc

        return issue

    def call(self, op: int, a0: int = 0, a1: int = 0) -> int:
        args = self._args
        _CALL.pack_into(args, 0, op, a0, a1, 0, 0, 0)
        tries = self._retries
        if not tries:  # pinned buffers: no retry loop on the hot path
            rc0: int = fcntl.ioctl(self._fd, IOCTL_PRIVCMD_HYPERCALL, args, True)
            return rc0
        while True:
            try:
                # A mutable buffer: ioctl passes its address and returns the C return value.
                rc: int = fcntl.ioctl(self._fd, IOCTL_PRIVCMD_HYPERCALL, args, True)
                return rc
            except OSError as exc:
                if exc.errno != errno.EFAULT or tries <= 0:
                    raise
                tries -= 1

    def fileno(self) -> int:
        return self._fd

    def close(self) -> None:
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)
