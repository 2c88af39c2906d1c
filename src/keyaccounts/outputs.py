"""Output-path safety and all-or-nothing output sets.

Why a room of its own: `io` writes one file atomically, but a command writes several (scores
and deals, a forecast and its funnel and deals, a pipeline's steps), and a failure after the
first rename would leave a mixed set. Inside `transaction()` every atomic write of `io` is
staged as a temp file beside its target; the renames happen only when the command succeeded,
and are undone if one of them fails. Outside a transaction a write renames at once.

Every output path is checked before it is written (and, by the CLI, before any work): it must
not be a file the same command reads, must not exist as anything but a regular file or a
symlink (a symlink is replaced, never followed), must not lie in a system location, and its
folder must be creatable and writable.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .changes import changes_path
from .errors import InputError

# Real (symlink-resolved) prefixes no command writes into: devices, kernel views, the OS.
SYSTEM_DIRS = ("/dev", "/proc", "/sys", "/etc", "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64",
               "/libx32", "/boot", "/run", "/var/run", "/var/lib", "/var/log", "/snap")
REPORT_SUFFIXES = (".html", ".htm")
INPUT_CLASH = "is also an input of this command; writing it would destroy the input"
_FILE_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISCHR, "a character device"),
               (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a named pipe (FIFO)"),
               (stat.S_ISSOCK, "a socket"))


def entry(path: str | Path) -> Path:
    """The directory entry a write to `path` replaces: its folder resolved, its name kept (a
    symlink at `path` is replaced, not followed)."""
    p = Path(os.path.abspath(os.path.expanduser(str(path))))
    return Path(os.path.realpath(p.parent)) / p.name


def _same_targets(path: str | Path) -> set[Path]:
    """Both the entry of `path` and what it finally resolves to (an input given as a symlink)."""
    return {entry(path), Path(os.path.realpath(os.path.expanduser(str(path))))}


def _kind_of(mode: int) -> str | None:
    for test, name in _FILE_KINDS:
        if test(mode):
            return name
    return None if stat.S_ISREG(mode) or stat.S_ISLNK(mode) else "not a regular file"


def _in_system(p: Path) -> bool:
    text = p.as_posix()
    return any(text == d or text.startswith(d + "/") for d in SYSTEM_DIRS)


def _check_folder(folder: Path, path: str, option: str) -> None:
    """The nearest existing ancestor of `folder` must be a writable folder."""
    probe = folder
    while not probe.exists() and probe != probe.parent:
        if probe.is_symlink():  # a dangling link as a folder
            break
        probe = probe.parent
    if not probe.is_dir():
        raise InputError(f"{option}: cannot write here: {probe} is not a folder", file=path)
    if not os.access(probe, os.W_OK | os.X_OK):
        raise InputError(f"{option}: cannot write here: the folder {probe} is read-only for this user",
                         file=path, hint="choose a writable folder")


def check_output_path(path: str | Path, *, inputs: Iterable[str | Path] = (), option: str = "--out",
                      folder_ok: bool = False) -> Path:
    """Refuse (InputError, named by `option`) an output path that is one of `inputs`, exists
    as anything but a regular file or symlink, lies in a system location, or whose folder is
    not writable; returns the entry that will be written. `folder_ok`: a folder output (Spark's
    Parquet parts) may replace a folder."""
    text = str(path)
    if not text.strip():
        raise InputError(f"{option}: an empty output path")
    target = entry(path)
    if _in_system(target):
        raise InputError(f"{option}: refusing to write into a system location ({target.parent})", file=text,
                         hint="write outputs into a project folder")
    clash = {t for i in inputs for t in _same_targets(i)}
    if target in clash:
        raise InputError(f"{option}: the output {INPUT_CLASH}", file=text, hint="choose another output name")
    _check_folder(target.parent, text, option)
    try:
        mode = os.lstat(target).st_mode
    except FileNotFoundError:
        mode = None
    except OSError as e:
        raise InputError(f"{option}: cannot inspect the output path: {e.strerror}", file=text) from None
    what = _kind_of(mode) if mode is not None else None
    if what and not (folder_ok and what == "a folder"):
        raise InputError(f"{option}: the output path exists as {what}; only a regular file is replaced",
                         file=text, hint="give a file name (e.g. out/scores.csv), not a folder or device")
    return target


def is_folder_output(path: str | Path) -> bool:
    """A Spark output written as a folder of part files (.parquet, .pq or no suffix)."""
    return Path(str(path)).suffix.lower() in (".parquet", ".pq", "")


def check_output_set(outputs: dict[str, str | Path], inputs: Iterable[str | Path] = (),
                     folders: Iterable[str] = ()) -> list[Path]:
    """check_output_path for each `option -> path`, and no two options naming one file. The
    options in `folders` are Spark folder outputs: an existing folder there (a previous run's
    Parquet parts) is replaced, not refused."""
    inputs = [i for i in inputs if i]
    folders = set(folders)
    seen: dict[Path, str] = {}
    for option, path in outputs.items():
        if not path:
            continue
        target = check_output_path(path, inputs=inputs, option=option,
                                   folder_ok=option in folders and is_folder_output(path))
        if target in seen:
            raise InputError(f"{option} and {seen[target]} name the same output file", file=str(path))
        seen[target] = option
    return list(seen)


def check_generator_folder(path: str | Path, *, replace: bool, option: str = "--out") -> None:
    """A generator (synth) writes into a new or empty folder; one that already holds files is
    refused unless `replace` (it may hold real data under the same table names)."""
    target = entry(path)
    if _in_system(target):
        raise InputError(f"{option}: refusing to write into a system location ({target})", file=str(path))
    if os.path.lexists(target) and not target.is_dir():
        raise InputError(f"{option}: exists and is not a folder", file=str(path), hint="give a folder name")
    present = sorted(p.name for p in target.iterdir())[:5] if target.is_dir() else []
    if present and not replace:
        raise InputError(f"{option}: the folder is not empty (holds {', '.join(present)}); refusing to "
                         "write generated tables over what may be real data", file=str(path),
                         hint="choose a new folder, or pass --replace to overwrite the tables of the same names")
    _check_folder(target, str(path), option)


def check_report_path(path: str | Path, option: str = "--out") -> None:
    """The report is one HTML file: refuse any other extension (e.g. a .csv that a later step
    or a spreadsheet would read)."""
    if Path(str(path)).suffix.lower() not in REPORT_SUFFIXES:
        raise InputError(f"{option}: the report is an HTML file; use a .html name", file=str(path))


def sibling(out: str | Path, suffix: str, ext: str | None = None) -> Path:
    """out with `suffix` added to its stem (and the extension `ext` when given): a.csv -> a_deals.csv."""
    out = Path(out)
    name = out.name
    stem = name[: -len("".join(out.suffixes))] if out.suffixes else name
    exts = "".join(out.suffixes) if ext is None else ext
    return out.with_name(f"{stem}{suffix}{exts}")


# ---------------------------------------------------------------- transactions


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _new_mode(path: Path) -> int:
    """The mode a plain write would give `path` (mkstemp makes temp files 0600)."""
    try:
        return os.stat(path).st_mode & 0o777
    except OSError:
        return 0o666 & ~_umask()


def _made_folders(folder: Path) -> list[Path]:
    """Create `folder` and return the folders that did not exist, deepest first."""
    missing, probe = [], folder
    while not probe.exists() and probe != probe.parent:
        missing.append(probe)
        probe = probe.parent
    folder.mkdir(parents=True, exist_ok=True)
    return missing


def _remove(path: Path) -> None:
    """A temp or kept file, link or folder."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _temp_folder_beside(path: Path, write: Callable[[Path], None]) -> Path:
    """write(tmp) creates and fills a temp folder in `path`'s folder (Spark makes the folder
    itself); removed again on any failure."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        tmp.rmdir()
        write(tmp)
    except BaseException:
        _remove(tmp)
        raise
    return tmp


def _temp_beside(path: Path, write: Callable[[Path], None]) -> Path:
    """write(tmp) into a temp file in `path`'s folder; removed again on any failure."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        write(tmp_path)
        os.chmod(tmp_path, _new_mode(path))
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
    return tmp_path


@dataclass
class OutputSet:
    """The staged outputs of one command: temp files waiting for `commit()`."""

    inputs: set[Path] = field(default_factory=set)
    staged: dict[Path, Path] = field(default_factory=dict)  # target entry -> temp file
    folders: list[Path] = field(default_factory=list)  # created for it, removed on abort if empty

    def add_input(self, path: str | Path) -> None:
        self.inputs |= _same_targets(path)

    def stage(self, path: Path, write: Callable[[Path], None], *, folder: bool = False) -> Path:
        """Stage one output (`folder`: write(tmp) makes a folder, e.g. Spark's Parquet parts);
        returns the entry it will replace."""
        target = check_output_path(path, inputs=self.inputs, option="output", folder_ok=folder)
        self.folders += _made_folders(target.parent)
        old = self.staged.pop(target, None)
        if old is not None:
            _remove(old)  # written twice in one command: the last one counts
        self.staged[target] = (_temp_folder_beside if folder else _temp_beside)(target, write)
        return target

    def commit(self) -> None:
        """Rename every temp file onto its target; if one rename fails, put back the targets
        already replaced (kept through hard links) and remove the rest."""
        done: list[tuple[Path, Path | None]] = []
        try:
            for target, tmp in list(self.staged.items()):
                done.append((target, _keep(target, move=tmp.is_dir())))
                os.replace(tmp, target)
                del self.staged[target]
        except BaseException:
            for target, kept in reversed(done):
                with contextlib.suppress(OSError):
                    _put_back(target, kept, replaced=target not in self.staged)
            self.abort()
            raise
        for _, kept in done:
            if kept is not None:
                _remove(kept)

    def abort(self) -> None:
        for tmp in self.staged.values():
            with contextlib.suppress(OSError):
                _remove(tmp)
        self.staged.clear()
        for folder in self.folders:  # deepest first
            with contextlib.suppress(OSError):
                folder.rmdir()
        self.folders.clear()


def _put_back(target: Path, kept: Path | None, *, replaced: bool) -> None:
    """Undo one rename of a failed commit: the kept link back at `target`, or the new file
    removed when there was none before."""
    if kept is None:
        if replaced:
            _remove(target)
        return
    if not os.path.islink(kept) and os.path.lexists(target) and os.path.samefile(kept, target):
        kept.unlink()  # not replaced yet; rename() between two links of one file would do nothing
        return
    if replaced and target.is_dir() and not target.is_symlink():
        shutil.rmtree(target)  # a rename cannot replace a folder that holds files
    os.replace(kept, target)


def _keep(target: Path, *, move: bool = False) -> Path | None:
    """A hard link to the current file at `target` (None when there is none) so a failed
    commit can put it back; a folder (or anything a folder output replaces, `move`) is moved
    aside instead: folders have no hard links, and a rename cannot replace one holding files."""
    if not os.path.lexists(target):
        return None
    kept = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.bak.tmp")
    if move or (target.is_dir() and not target.is_symlink()):
        os.replace(target, kept)
        return kept
    try:
        os.link(target, kept, follow_symlinks=False)  # a symlink output is kept as the link
    except OSError:
        return None  # no hard links here: the rename itself is still atomic
    return kept


_ACTIVE: list[OutputSet] = []


def current() -> OutputSet | None:
    """The innermost open output set, or None."""
    return _ACTIVE[-1] if _ACTIVE else None


@contextlib.contextmanager
def transaction(inputs: Iterable[str | Path] = ()) -> Iterator[OutputSet]:
    """Stage every io write inside the block; commit on success, discard on any exception
    (also Ctrl-C/SIGTERM). Nested blocks join the outer one."""
    if _ACTIVE:
        for i in inputs:
            _ACTIVE[-1].add_input(i)
        yield _ACTIVE[-1]
        return
    tx = OutputSet()
    for i in inputs:
        if i:
            tx.add_input(i)
    _ACTIVE.append(tx)
    try:
        yield tx
        _ACTIVE.pop()
        tx.commit()
    except BaseException:
        if _ACTIVE and _ACTIVE[-1] is tx:
            _ACTIVE.pop()
        tx.abort()
        raise


def write_atomic(path: Path, write: Callable[[Path], None]) -> None:
    """One output file: staged in the open transaction, else written and renamed at once
    (after the same path checks)."""
    tx = current()
    if tx is not None:
        tx.stage(Path(path), write)
        return
    target = check_output_path(path, option="output")
    _made_folders(target.parent)
    os.replace(_temp_beside(target, write), target)


def write_folder_atomic(path: str | Path, write: Callable[[Path], None]) -> Path:
    """One folder output (write(tmp) creates it): staged in the open transaction and renamed
    with the command's other outputs, else renamed at once; a failure leaves what was at
    `path` as it was."""
    tx = current()
    if tx is not None:
        return tx.stage(Path(path), write, folder=True)
    with transaction() as tx:
        return tx.stage(Path(path), write, folder=True)


def score_deals_path(out: str | Path) -> Path:
    """The default open-deals list of `score`: OUT with '_deals' added to the name."""
    out = Path(out)
    return out.with_name(out.name.replace(out.stem, out.stem + "_deals", 1))


def planned_outputs(step: str, params: dict, where: str = "") -> dict[str, Path]:
    """option label -> file for every output a step (or the command of that name) will write,
    so that all of them are checked before the first is: `where` prefixes the labels (e.g.
    'steps[2].score.')."""
    out = params.get("out")
    if not out:
        return {}
    out = Path(out)
    if step == "backtest":  # the forecast command's title with --backtest
        step, params = "forecast", {**params, "backtest": True}
    label = (lambda k: f"{where}{k}") if where else (lambda k: f"--{k.replace('_', '-')}")
    files = {label("out"): out}
    if step == "score":
        files[label("deals_out")] = Path(params.get("deals_out") or score_deals_path(out))
        if params.get("compare_to"):
            files[f"{label('out')} (changes)"] = Path(changes_path(out))
    elif step == "features" and params.get("deals_out"):
        files[label("deals_out")] = Path(params["deals_out"])
    elif step == "forecast" and params.get("backtest"):
        for s in ("_summary", "_calibration", "_reps"):   # _reps only with opportunity_snapshots
            files[f"{label('out')} ({s[1:]})"] = sibling(out, s)
        files[f"{label('out')} (chart)"] = sibling(out, "", ".png")
    elif step == "forecast":
        # _owners, _disagreements, _reps only when grouped by owner, with rep calls, with snapshots
        for s in ("_funnel", "_deals", "_owners", "_disagreements", "_reps"):
            files[f"{label('out')} ({s[1:]})"] = sibling(out, s)
    elif step == "report":
        check_report_path(out, label("out"))
    return files
