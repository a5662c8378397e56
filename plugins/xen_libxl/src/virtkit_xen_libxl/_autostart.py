"""Persistence and autostart, the way Xen hosts have them.

A domain is persistent when the state directory holds its definition (_state). Autostart is
Xen's ``xendomains`` service: at host boot it runs ``xl create`` on every file in its auto
directory (``XENDOMAINS_AUTO``, set in /etc/default/xendomains on Debian, /etc/sysconfig/xendomains
elsewhere; /etc/xen/auto by default). Marking a domain writes its definition there as an xl config
``NAME.cfg`` (uuid included, so the domain xendomains starts is the same definition), atomically,
under a header that says virtkit wrote it. Any entry there whose config names the domain marks it:
by its uuid, or by its name when it has no uuid (a user's symlink ``guest.cfg -> ../guest.cfg``
counts). Unmarking removes the entries that are virtkit's files or symlinks; a regular file the
user wrote is theirs: unmarking refuses to delete it (undefine leaves it, with a warning). Entries
that cannot be read or parsed, larger than :data:`MAX_BYTES`, or not regular files are skipped;
dotfiles too (xendomains' ``*`` glob skips them, so a write's temporary file is never started).
"""

from __future__ import annotations

import os
import uuid as _uuid

import virtkit
from virtkit import DomainRef, InvalidArgument, InvalidOperation, PermissionDenied, check_flags

from ._listing import PRIORITY
from ._state import fsync_dir, write_atomic

TYPE_CHECKING = False
if TYPE_CHECKING:
    from virtkit import DomainConfig

    from ._state import Record, State

__all__ = ["DEFAULT_AUTO_DIR", "ENV_AUTO_DIR", "MAX_BYTES", "XENDOMAINS_DEFAULTS", "AutoDir", "AutostartMixin"]

DEFAULT_AUTO_DIR = "/etc/xen/auto"
ENV_AUTO_DIR = "VIRTKIT_XEN_LIBXL_AUTO_DIR"
#: Where xendomains reads its settings: Debian's file, then other distributions'.
XENDOMAINS_DEFAULTS = ("/etc/default/xendomains", "/etc/sysconfig/xendomains")
#: An xl config is a few hundred bytes: larger entries in the auto directory are skipped unread.
MAX_BYTES = 1 << 20
_SETTINGS_MAX = 1 << 16
_SUFFIX = ".cfg"
#: In the first line of every file virtkit writes there: what marks a file as virtkit's to remove.
_OURS = "(virtkit xen_libxl)"


def xendomains_auto(files: tuple[str, ...] = XENDOMAINS_DEFAULTS) -> str | None:
    """``XENDOMAINS_AUTO`` as the first of ``files`` that exists sets it (its last assignment,
    as the shell that sources it would); :data:`DEFAULT_AUTO_DIR` when unset, or set to what
    only a shell could evaluate; None when set empty (xendomains then starts no config)."""
    import shlex

    for path in files:
        try:
            with open(path, "rb") as f:
                text = f.read(_SETTINGS_MAX).decode("utf-8", "replace")
        except OSError:
            continue
        value: str | None = DEFAULT_AUTO_DIR
        for line in text.splitlines():
            head, sep, raw = line.strip().removeprefix("export ").partition("=")
            if not sep or head != "XENDOMAINS_AUTO" or "$" in raw or "`" in raw:
                continue
            try:
                words = shlex.split(raw, comments=True)
            except ValueError:  # unbalanced quotes: the shell would fail there too
                continue
            if len(words) <= 1:  # X= and X="" set it empty; several words are a command's environment
                value = words[0] if words and words[0] else None
        return value
    return DEFAULT_AUTO_DIR


def _text(path: str) -> str | None:
    """An entry's text: a regular UTF-8 file of at most MAX_BYTES; None for anything else
    (never blocks on a FIFO)."""
    try:
        return virtkit.read_config_file(path, "xendomains entry", limit=MAX_BYTES)
    except InvalidArgument:
        return None


def _ours(path: str, text: str) -> bool:
    """Whether the entry at ``path``, holding ``text``, is a regular file virtkit wrote (our
    header first, not a symlink)."""
    return _OURS in text.partition("\n")[0] and not os.path.islink(path)


def _starts(path: str, text: str, cfg: DomainConfig) -> bool:
    """Whether the xl config ``text`` (from ``path``) starts domain ``cfg``: its uuid, else its
    name; False when it is no xl config."""
    from ._xlcfg import parse

    try:
        # xl ignores keys it does not know, so a config xendomains would run is read as xl reads it
        settings = parse(text, path, strict=False)
        name, raw_uuid = settings.get("name"), settings.get("uuid")
        if not isinstance(name, str) or not isinstance(raw_uuid, str | None):
            return False
        uid = _uuid.UUID(raw_uuid) if raw_uuid is not None else None
    except (ValueError, RecursionError):  # InvalidArgument is a ValueError
        return False
    return uid == cfg.uuid if uid is not None else name == cfg.name


class AutoDir:
    """xendomains' auto directory: ``path`` given (params, environment), else read from
    xendomains' settings (``xendomains``: those files, default :data:`XENDOMAINS_DEFAULTS`) on
    first use."""

    def __init__(self, path: str | None = None, xendomains: tuple[str, ...] | None = None) -> None:
        self._given = path
        self._xendomains = xendomains
        self._path: str | None = None
        self._resolved = path is not None

    def __repr__(self) -> str:
        return f"<AutoDir {self._given or 'from xendomains'}>"

    @property
    def path(self) -> str | None:
        """The directory, or None where xendomains' settings turn autostart off."""
        if not self._resolved:
            self._path, self._resolved = xendomains_auto(self._xendomains or XENDOMAINS_DEFAULTS), True
        return self._given or self._path

    def _entries(self) -> list[str]:
        root = self.path
        if root is None:
            return []
        try:
            names = os.listdir(root)
        except (FileNotFoundError, NotADirectoryError):
            return []
        except PermissionError as exc:
            raise PermissionDenied(f"cannot read xendomains' auto directory {root}: {exc.strerror}") from None
        return [os.path.join(root, n) for n in sorted(names) if not n.startswith(".")]

    def _found(self, cfg: DomainConfig) -> list[tuple[str, bool]]:
        """Each entry whose config starts ``cfg``'s domain, and whether it is virtkit's own file."""
        found = []
        for path in self._entries():
            text = _text(path)
            if text is not None and _starts(path, text, cfg):
                found.append((path, _ours(path, text)))
        return found

    def find(self, cfg: DomainConfig) -> list[str]:
        """The entries whose config starts ``cfg``'s domain."""
        return [path for path, _ours in self._found(cfg)]

    def _final(self, cfg: DomainConfig) -> str:
        """Where virtkit writes ``cfg``'s autostart config; InvalidOperation where xendomains' settings
        turn autostart off."""
        root = self.path
        if root is None:
            files = " or ".join(self._xendomains or XENDOMAINS_DEFAULTS)
            raise InvalidOperation(f"XENDOMAINS_AUTO is empty in {files}: xendomains starts no domain at boot")
        virtkit.check_domain_name(cfg.name)  # a file name: no '/', no leading dot
        return os.path.join(root, f"{cfg.name}{_SUFFIX}")

    def write(self, cfg: DomainConfig) -> str:
        """``cfg`` (uuid set) as ``NAME.cfg``, atomically. Refused where that name holds another
        domain's config or a file that is not an xl config; a regular file the user wrote that
        starts the domain marks it already and is never overwritten."""
        final = self._final(cfg)
        if os.path.lexists(final):
            text = _text(final)
            if text is None or not _starts(final, text, cfg):
                raise InvalidOperation(f"{final} exists and is not {cfg.name!r}'s xl config: remove it first")
            if not _ours(final, text) and not os.path.islink(final):
                return final
        return self._put(final, cfg)

    def rewrite(self, cfg: DomainConfig) -> None:
        """After a redefine: virtkit's own ``NAME.cfg`` of the domain, if there, becomes ``cfg``.
        A user's entry is theirs: a symlink follows their file, not ours."""
        if self.path is None:
            return
        final = self._final(cfg)
        text = _text(final)
        if text is not None and _ours(final, text) and _starts(final, text, cfg):
            self._put(final, cfg)

    def _put(self, final: str, cfg: DomainConfig) -> str:
        from ._xlcfg import config_to_xl

        if cfg.uuid is None:
            raise InvalidArgument("an autostart config needs a uuid")
        text = (
            f"# {cfg.name}'s definition {_OURS}, started at boot by xendomains.\n"
            f"# `virtkit autostart --disable {cfg.name}` removes this file.\n" + config_to_xl(cfg)
        )
        root = os.path.dirname(final)
        try:
            os.makedirs(root, mode=0o755, exist_ok=True)
            write_atomic(root, os.path.basename(final), text)  # its dotfile is skipped by xendomains' glob
        except PermissionError as exc:
            raise PermissionDenied(f"cannot write {final}: {exc.strerror}") from None
        return final

    def remove(self, cfg: DomainConfig, *, keep_users: bool = False) -> list[str]:
        """Unmark: virtkit's files and the symlinks naming the domain go (a link, not its target).
        A regular file the user wrote that names it is refused (InvalidOperation, nothing
        removed), or with ``keep_users`` left in place; returns the entries left."""
        found = self._found(cfg)
        users = [path for path, ours in found if not ours and not os.path.islink(path)]
        if users and not keep_users:
            raise InvalidOperation(
                f"{users[0]} starts {cfg.name!r} at boot and virtkit did not write it: "
                "move it out of xendomains' auto directory yourself (virtkit removes only its own files and links)"
            )
        gone = [path for path, _ours in found if path not in users]
        for path in gone:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
            except PermissionError as exc:
                raise PermissionDenied(f"cannot remove {path}: {exc.strerror}") from None
        if gone:
            fsync_dir(os.path.dirname(gone[0]))
        return users


class AutostartMixin:
    """The persistence and autostart operations of :class:`virtkit_xen_libxl.Driver` (mixed in)."""

    if TYPE_CHECKING:
        state: State
        auto: AutoDir

        def _record(self, dom: DomainRef) -> Record | None: ...
        def _resolve(self, dom: DomainRef) -> tuple[DomainRef | None, Record | None]: ...

    def _definition(self, dom: DomainRef) -> Record | None:
        """The domain's definition; None for a running transient one, NoSuchDomain for none."""
        rec = self._record(dom)  # one stat for a defined domain: no hypercall
        return rec if rec is not None else self._resolve(dom)[1]

    @virtkit.priority(PRIORITY)
    def domain_is_persistent(self, dom: DomainRef, *, flags: int = 0) -> bool:
        check_flags(flags)
        return self._definition(dom) is not None

    @virtkit.priority(PRIORITY)
    def domain_get_autostart(self, dom: DomainRef, *, flags: int = 0) -> bool:
        """Whether xendomains' auto directory holds a config of the domain. A transient domain
        never autostarts: a file of its name there is not a definition virtkit keeps."""
        check_flags(flags)
        rec = self._definition(dom)
        return rec is not None and bool(self.auto.find(rec.config))

    @virtkit.priority(PRIORITY)
    def domain_set_autostart(self, dom: DomainRef, autostart: bool, *, flags: int = 0) -> None:
        check_flags(flags)
        with self.state.locked():  # against a define or undefine of the same domain
            rec = self._definition(dom)
            if rec is None:
                who = dom.name or str(dom.uuid)
                raise InvalidOperation(f"cannot set autostart of {who!r}: it is transient (define it first)")
            if autostart:
                self.auto.write(rec.config)
            else:
                self.auto.remove(rec.config)

    def _autostart_drop(self, cfg: DomainConfig) -> None:
        """At undefine (state lock held): a transient domain never autostarts, so virtkit's marks
        go; a file the user wrote stays theirs, said in a warning."""
        kept = self.auto.remove(cfg, keep_users=True)
        if kept:
            from ._driver import _log  # the plugin's logger, imported on first use as it is there

            _log().warning("undefined %r, but %s (not virtkit's) still starts it at boot", cfg.name, ", ".join(kept))
