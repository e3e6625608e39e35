"""The plan file: plain JSON, validated field by field, never replaced unless it is one.

One file holds a section per identity (CPU, BLAS, fastlinear version), as FFTW's
wisdom accumulates, so that a file pinned with ``FASTLINEAR_PLAN_FILE`` and shared
between machines keeps every machine's plans::

    {"format": 3, "sections": [{"identity": {...}, "plans": {key: entry, ...}}, ...]}

A file that is not a plan file fastlinear can parse (a user's JSON, other bytes,
a directory, one it may not write) is never written: this process keeps its plans
in memory instead, with one warning.  Only the default file in fastlinear's own
cache directory is replaced when it is corrupt.
"""
import contextlib
import hashlib
import json
import os
import stat
import sys
import tempfile

from ._warn import warn

FORMAT = 3
# The single-identity layout earlier versions wrote: read as one section, and
# rewritten as a section of the current layout.
OLD_FORMAT = 2
PLAN_FIELDS = frozenset({"path", "small_kernels", "tasks", "blas"})
# The most tasks per product a plan may hold (fastlinear._parallel.make_plan's
# bound; a machine's plans have its CPU count rounded up to a power of two).
MAX_TASKS = 1 << 20
# Where the plan was measured here: how far it led the runner-up (null if
# it had none) and the seconds its candidates were screened for.
MEASURE_FIELDS = frozenset({"margin", "budget"})


def cache_dir():
    """fastlinear's folder in the user's cache directory."""
    if sys.platform == "win32":
        root = os.environ.get("LOCALAPPDATA") or os.path.expanduser("~\\AppData\\Local")
        return os.path.join(root, "fastlinear", "Cache")
    if sys.platform == "darwin":
        return os.path.expanduser("~/Library/Caches/fastlinear")
    return os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"),
                        "fastlinear")


def default_path(identity):
    """The file of this identity in the user's cache directory."""
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()
    return os.path.join(cache_dir(), f"plans-{digest[:16]}.json")


def _read_only(path):
    """Whether the file exists without its owner's write bit (checked by the bit
    itself: for root, os.access would say any file is writable)."""
    try:
        return not os.stat(path).st_mode & stat.S_IWUSR
    except OSError:
        return False


class NotAPlanFile(ValueError):
    """The file is not one fastlinear wrote, or cannot be trusted: never replace it."""


def _check_entry(entry, paths, backends):
    """ValueError unless ``entry`` is a plan entry naming one of ``paths`` and ``backends``."""
    if not (isinstance(entry, dict) and set(entry) in (PLAN_FIELDS, PLAN_FIELDS | MEASURE_FIELDS)
            and entry["path"] in paths and isinstance(entry["small_kernels"], bool)
            and type(entry["tasks"]) is int and 1 <= entry["tasks"] <= MAX_TASKS
            and entry["blas"] in backends):
        raise ValueError(f"not a plan: {entry!r}")
    if "budget" in entry and not (
            (entry["margin"] is None or type(entry["margin"]) is float and 0 < entry["margin"] < 1e3)
            and type(entry["budget"]) is float and 0 < entry["budget"] < 1e6):
        raise ValueError(f"not a margin and budget: {entry!r}")


def _check_section(section, paths, backends, parse_key):
    if not (isinstance(section, dict) and set(section) == {"identity", "plans"}
            and isinstance(section["identity"], dict) and isinstance(section["plans"], dict)):
        raise ValueError("a section is not {identity, plans}")
    for key, entry in section["plans"].items():
        parse_key(key)
        _check_entry(entry, paths, backends)


def parse(text, paths, backends, parse_key):
    """The sections of a plan file's bytes; NotAPlanFile unless it is one."""
    try:
        data = json.loads(text)
    except (ValueError, UnicodeDecodeError) as e:
        raise NotAPlanFile(f"is not JSON ({type(e).__name__})") from None
    if not isinstance(data, dict) or data.get("format") not in (FORMAT, OLD_FORMAT):
        raise NotAPlanFile("is not a fastlinear plan file")
    try:
        if data["format"] == OLD_FORMAT:
            if set(data) != {"format", "identity", "plans"}:
                raise ValueError("format 2 is {format, identity, plans}")
            sections = [{"identity": data["identity"], "plans": data["plans"]}]
        else:
            if set(data) != {"format", "sections"} or not isinstance(data["sections"], list):
                raise ValueError("format 3 is {format, sections}")
            sections = data["sections"]
        for section in sections:
            _check_section(section, paths, backends, parse_key)
    except (ValueError, TypeError, KeyError) as e:
        raise NotAPlanFile(f"is corrupt ({type(e).__name__}: {e})") from None
    return sections


class PlanFile:
    """One plan file: its path, whether fastlinear owns it, and how it is read and merged."""

    def __init__(self, path, owned, paths, backends, parse_key):
        self.path = path
        # The default file lives in fastlinear's cache: replaced when corrupt,
        # and trusted only if no other user can write it.
        self.owned = owned
        self._paths, self._backends, self._parse_key = paths, backends, parse_key

    def _read_sections(self):
        """The sections of the file ([] if there is none); NotAPlanFile if it is not one."""
        try:
            with open(self.path, "rb") as f:
                st = os.fstat(f.fileno())
                text = f.read()
        except FileNotFoundError:
            return []
        except OSError as e:
            raise NotAPlanFile(f"cannot be read ({e.strerror or e})") from None
        if hasattr(os, "geteuid") and (st.st_uid != os.geteuid() or st.st_mode & 0o022):
            raise NotAPlanFile("can be written by another user")
        return parse(text, self._paths, self._backends, self._parse_key)

    def read(self, identity):
        """The plan entries of ``identity`` in the file, {} with one warning if it is not a plan file."""
        try:
            sections = self._read_sections()
        except NotAPlanFile as e:
            self._warn_once(str(e), "ignoring it; using plans measured here or built in")
            return {}
        plans = {}
        others = 0
        for section in sections:
            if section["identity"] == identity:
                plans.update(section["plans"])
            else:
                others += 1
        if others and not plans:
            warn(f"fastlinear: the plan file {self.path} has plans for {others} other CPU, "
                 "BLAS or fastlinear version(s), none for this one; this one's are added "
                 "beside them", cause=("identity", self.path))
        return plans

    def write(self, identity, plans):
        """Put ``identity``'s section into the file, keeping every other section;
        False (with one warning) where the file is not fastlinear's to replace."""
        try:
            sections = self._read_sections()
        except NotAPlanFile as e:
            if not (self.owned and os.path.isfile(self.path) and not os.path.islink(self.path)):
                self._warn_once(str(e), "leaving it as it is; plans measured here last "
                                        "until this process ends")
                return False
            sections = []  # fastlinear's own cache file, corrupt: replaced
        if _read_only(self.path):
            self._warn_once("is read-only", "leaving it as it is; plans measured here last "
                                            "until this process ends")
            return False
        sections = [s for s in sections if s["identity"] != identity]
        sections.append({"identity": identity, "plans": dict(sorted(plans.items()))})
        # A link is followed, so that the file it names is updated and the link kept.
        target = os.path.realpath(self.path)
        tmp = None
        try:
            os.makedirs(os.path.dirname(target) or ".", mode=0o700, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=os.path.dirname(target) or ".", prefix=".plans-")
            with os.fdopen(fd, "w") as f:
                if os.path.exists(target):  # the replacement keeps the file's permissions
                    os.chmod(tmp, stat.S_IMODE(os.stat(target).st_mode))
                json.dump({"format": FORMAT, "sections": sections}, f, indent=1)
            os.replace(tmp, target)
        except OSError as e:
            if tmp is not None:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
            self._warn_once(f"cannot be written ({e.strerror or e})",
                            "plans measured here last until this process ends")
            return False
        return True

    def _warn_once(self, why, what_now):
        warn(f"fastlinear: the plan file {self.path} {why}: {what_now}",
             cause=(why.split(" (")[0], self.path))

    @contextlib.contextmanager
    def lock(self):
        """Hold the file against other processes planning into it (a no-op where
        no lock can be taken: the write is atomic all the same)."""
        try:
            import fcntl
        except ImportError:
            yield
            return
        # The folder is locked, not a file: its inode outlives every replace of
        # the plan file, and no lock file is left beside a file the user pinned.
        folder = os.path.dirname(os.path.realpath(self.path)) or "."
        try:
            if self.owned:
                os.makedirs(folder, mode=0o700, exist_ok=True)
            fd = os.open(folder, os.O_RDONLY)
        except OSError:
            yield
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # which releases the lock
