"""Hypercall-safe buffers and the privcmd ioctl, on the host (no Xen needed)."""

from __future__ import annotations

import errno
import os
import struct

import pytest

from virtkit_xen_hyper import _privcmd as P


def test_anonymous_buffer_is_page_aligned_populated_and_closable() -> None:
    buf = P.HypercallBuffer(3, device="/nonexistent/xen/hypercall")
    try:
        assert not buf.pinned
        assert buf.size == 3 * P.PAGE_SIZE == len(buf.mem)
        assert buf.addr and buf.addr % P.PAGE_SIZE == 0
        buf.mem[0:4] = b"abcd"
        import ctypes

        assert ctypes.string_at(buf.addr, 4) == b"abcd"  # addr is where the bytes live
        # Every page is present now, not at the first hypercall.
        with open("/proc/self/smaps") as f:
            smaps = f.read()
        start = f"{buf.addr:x}-"
        block = smaps[smaps.index(start) :].split("\n")
        rss = next(line for line in block if line.startswith("Rss:"))
        assert int(rss.split()[1]) >= 3 * 4
    finally:
        buf.close()
    assert buf.addr == 0 and buf.mem.closed
    buf.close()


def test_anonymous_buffer_is_not_inherited_on_fork() -> None:
    buf = P.HypercallBuffer(1, device=None)
    try:
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # child: the mapping must be absent (MADV_DONTFORK)
            try:
                with open("/proc/self/maps") as f:
                    present = any(line.startswith(f"{buf.addr:x}-") for line in f)
                os.write(w, b"1" if present else b"0")
            finally:
                os._exit(0)
        os.close(w)
        answer = os.read(r, 1)
        os.close(r)
        os.waitpid(pid, 0)
        assert answer == b"0"
        with open("/proc/self/maps") as f:
            assert any(line.startswith(f"{buf.addr:x}-") for line in f)  # still ours
    finally:
        buf.close()


def test_privcmd_falls_back_along_the_paths(tmp_path: object) -> None:
    with pytest.raises(FileNotFoundError):
        P.Privcmd(("/nonexistent/privcmd", "/nonexistent/proc-privcmd"))
    p = P.Privcmd(("/nonexistent/privcmd", "/dev/null"))
    try:
        assert p.path == "/dev/null"
        with pytest.raises(OSError) as exc:
            p.call(17, 0, 0)  # /dev/null knows no ioctl: the kernel's answer comes through
        assert exc.value.errno in (errno.ENOTTY, errno.EINVAL)
    finally:
        p.close()
    p.close()


def test_call_packs_the_privcmd_struct_and_retries_efault(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[int, int, bytes]] = []
    faults = [errno.EFAULT, errno.EFAULT]

    def ioctl(fd: int, req: int, arg: bytearray, mutate: bool) -> int:
        assert mutate is True and isinstance(arg, bytearray)  # mutable: the int result comes back
        seen.append((fd, req, bytes(arg)))
        if faults:
            raise OSError(faults.pop(0), "fault")
        return 0x40011

    monkeypatch.setattr(P.fcntl, "ioctl", ioctl)
    p = P.Privcmd(("/dev/null",))
    try:
        assert p.call(36, 0xDEAD000, 7) == 0x40011
        assert len(seen) == 3  # two EFAULTs retried, as libxc does for unpinned buffers
        _fd, req, raw = seen[0]
        assert req == P.IOCTL_PRIVCMD_HYPERCALL == 0x00305000
        assert struct.unpack("<6Q", raw) == (36, 0xDEAD000, 7, 0, 0, 0)
        faults[:] = [errno.EFAULT] * 3
        with pytest.raises(OSError) as exc:
            p.call(36, 1, 0)
        assert exc.value.errno == errno.EFAULT
        p.set_pinned(True)  # pinned pages never fault: the first EFAULT is final
        seen.clear()
        faults[:] = [errno.EFAULT]
        with pytest.raises(OSError):
            p.call(36, 1, 0)
        assert len(seen) == 1
        faults[:] = [errno.EPERM]
        with pytest.raises(PermissionError):
            p.call(36, 1, 0)
    finally:
        p.close()
