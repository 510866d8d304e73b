"""Sandbox packing and safe unpacking with real files and real tar archives."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.wrapper.conftest import write_tree
from wrapper.errors import ChecksumMismatch, SandboxError, UnsafeSandbox
from wrapper.sandbox import SandboxLimits, pack, sha256_file, unpack, verify_sha256

# ------------------------------------------------------------------------------ helpers


def tree_of(base: Path) -> dict[str, bytes]:
    """Relative name -> content of every regular file below ``base``."""
    return {
        str(p.relative_to(base)): p.read_bytes()
        for p in sorted(base.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


def member_names(archive: Path) -> list[str]:
    with tarfile.open(archive) as tar:
        return [m.name for m in tar.getmembers() if m.isfile()]


def evil_archive(path: Path, members: list[tuple[tarfile.TarInfo, bytes]]) -> Path:
    """A tar.gz holding exactly these (header, content) members, however malicious."""
    with tarfile.open(path, "w:gz") as tar:
        for info, content in members:
            if info.isreg():
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
            else:
                tar.addfile(info)
    return path


def reg(name: str, content: bytes = b"x") -> tuple[tarfile.TarInfo, bytes]:
    return tarfile.TarInfo(name), content


def special(name: str, kind: bytes, link: str = "") -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    return info, b""


def listing(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


# ---------------------------------------------------------------------------- packing


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    base = tmp_path / "work"
    write_tree(
        base,
        {
            "std.out": "hello\n",
            "std.err": "",
            "a.log": "log a",
            "sub/b.log": "log b",
            "out/one.dat": "1",
            "out/deep/two.dat": "22",
            "notes.txt": "n",
        },
    )
    return base


def test_glob_matches_within_one_directory_level(workdir: Path, tmp_path: Path) -> None:
    result = pack(workdir, ["*.log"], tmp_path / "o.tar.gz")
    assert result.included == ["a.log"]
    assert member_names(result.path) == ["a.log"]


def test_double_star_and_directories_are_recursive(workdir: Path, tmp_path: Path) -> None:
    by_glob = pack(workdir, ["**/*.log"], tmp_path / "g.tar.gz")
    assert by_glob.included == ["a.log", "sub/b.log"]
    by_dir = pack(workdir, ["out"], tmp_path / "d.tar.gz")
    assert by_dir.included == ["out/deep/two.dat", "out/one.dat"]
    by_star = pack(workdir, ["out/**"], tmp_path / "s.tar.gz")
    assert by_star.included == by_dir.included


def test_missing_patterns_are_reported_and_the_rest_packed(workdir: Path, tmp_path: Path) -> None:
    result = pack(workdir, ["std.out", "nothing.root", "*.png"], tmp_path / "o.tar.gz")
    assert result.included == ["std.out"]
    assert result.missing == ["nothing.root", "*.png"]


def test_patterns_leaving_the_base_are_refused(workdir: Path, tmp_path: Path) -> None:
    (tmp_path / "secret").write_text("outside")
    result = pack(workdir, ["../secret", "/etc/hostname", "std.out"], tmp_path / "o.tar.gz")
    assert result.included == ["std.out"]
    assert result.missing == ["../secret", "/etc/hostname"]


def test_symlinks_out_of_the_base_are_not_followed(workdir: Path, tmp_path: Path) -> None:
    (tmp_path / "secret").write_text("outside")
    os.symlink(tmp_path / "secret", workdir / "leak")
    os.symlink(tmp_path, workdir / "leakdir")
    os.symlink("notes.txt", workdir / "alias")
    result = pack(workdir, ["*"], tmp_path / "o.tar.gz")
    assert "leak" not in result.included
    assert not any(name.startswith("leakdir") for name in member_names(result.path))
    # A link to a file inside the base is stored as that file's content.
    dest = tmp_path / "back"
    unpack(result.path, dest)
    assert (dest / "alias").read_text() == "n"


def test_size_cap_lists_what_was_left_out(workdir: Path, tmp_path: Path) -> None:
    (workdir / "big.bin").write_bytes(b"\0" * 5000)
    result = pack(
        workdir, ["std.out", "big.bin", "notes.txt"], tmp_path / "o.tar.gz", max_bytes=100
    )
    assert result.included == ["std.out", "notes.txt"]
    assert result.left_out == ["big.bin"]
    assert result.missing == []


def test_digest_is_of_the_archive_bytes_and_repeatable(workdir: Path, tmp_path: Path) -> None:
    first = pack(workdir, ["*.log", "out"], tmp_path / "1.tar.gz")
    second = pack(workdir, ["*.log", "out"], tmp_path / "2.tar.gz")
    assert first.sha256 == sha256_file(first.path)
    assert first.size_bytes == first.path.stat().st_size
    assert first.sha256 == second.sha256


def test_archive_inside_the_base_does_not_pack_itself(workdir: Path) -> None:
    result = pack(workdir, ["*"], workdir / "out.tar.gz")
    assert "out.tar.gz" not in result.included
    verify_sha256(result.path, result.sha256)


def test_checksum_mismatch_is_refused(workdir: Path, tmp_path: Path) -> None:
    result = pack(workdir, ["std.out"], tmp_path / "o.tar.gz")
    with pytest.raises(ChecksumMismatch):
        verify_sha256(result.path, "0" * 64)


def test_pack_then_unpack_keeps_modes_and_empty_dirs(workdir: Path, tmp_path: Path) -> None:
    (workdir / "run.sh").write_text("#!/bin/sh\n")
    (workdir / "run.sh").chmod(0o755)
    (workdir / "empty").mkdir()
    result = pack(workdir, ["run.sh", "empty"], tmp_path / "o.tar.gz")
    dest = tmp_path / "back"
    unpack(result.path, dest)
    assert os.access(dest / "run.sh", os.X_OK)
    assert (dest / "empty").is_dir()


names = st.text(alphabet="abcxyz0123_.-", min_size=1, max_size=8).filter(
    lambda n: n not in (".", "..")
)
trees = st.dictionaries(
    st.lists(names, min_size=1, max_size=3).map("/".join),
    st.binary(max_size=300),
    max_size=12,
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(files=trees)
def test_round_trip_of_random_trees_is_identical(tmp_path: Path, files: dict[str, bytes]) -> None:
    # Drop names that are also used as a directory of another name: not a valid tree.
    dirs = {"/".join(n.split("/")[:i]) for n in files for i in range(1, n.count("/") + 1)}
    files = {n: c for n, c in files.items() if n not in dirs}
    case = tmp_path / f"case{len(list(tmp_path.iterdir()))}"
    source, dest = case / "src", case / "dest"
    source.mkdir(parents=True)
    write_tree(source, files)
    result = pack(source, ["."], case / "o.tar.gz")
    assert sorted(result.included) == sorted(files)
    unpack(result.path, dest)
    assert tree_of(dest) == tree_of(source)


# --------------------------------------------------------------------------- unpacking


@pytest.mark.parametrize(
    ("members", "refused"),
    [
        ([reg("../x")], "../x"),
        ([reg("a/../../x")], "a/../../x"),
        ([reg("/tmp/gridpilot-abs-x")], "/tmp/gridpilot-abs-x"),
        ([special("pw", tarfile.SYMTYPE, "/etc/passwd")], "pw"),
        ([special("up", tarfile.SYMTYPE, "../.."), reg("up/x")], "up"),
        ([special("hl", tarfile.LNKTYPE, "../outside.txt")], "hl"),
        ([special("hl", tarfile.LNKTYPE, "/etc/passwd")], "hl"),
        ([special("null", tarfile.CHRTYPE)], "null"),
        ([special("disk", tarfile.BLKTYPE)], "disk"),
        ([special("pipe", tarfile.FIFOTYPE)], "pipe"),
    ],
    ids=[
        "dotdot",
        "nested-dotdot",
        "absolute",
        "symlink-abs",
        "symlink-up",
        "hardlink-up",
        "hardlink-abs",
        "chardev",
        "blockdev",
        "fifo",
    ],
)
def test_unsafe_members_are_refused_and_nothing_lands_outside(
    tmp_path: Path, members: list[tuple[tarfile.TarInfo, bytes]], refused: str
) -> None:
    (tmp_path / "outside.txt").write_text("keep me")
    archive = evil_archive(tmp_path / "evil.tar.gz", members)
    before = listing(tmp_path)
    dest = tmp_path / "a" / "b" / "dest"
    with pytest.raises(UnsafeSandbox) as caught:
        unpack(archive, dest)
    assert caught.value.member == refused
    assert listing(tmp_path) - before <= {"a", "a/b", "a/b/dest"} | {
        str(p.relative_to(tmp_path)) for p in dest.rglob("*")
    }
    assert (tmp_path / "outside.txt").read_text() == "keep me"
    assert not Path("/tmp/gridpilot-abs-x").exists()


def test_link_made_to_lead_out_by_a_later_member_cannot_be_written_through(tmp_path: Path) -> None:
    # "a" is harmless when created (sub/sub2/b does not exist yet); once "sub/sub2/b -> ../.."
    # exists, "a" resolves to dest/.. and "a/escaped.txt" would land outside.
    archive = evil_archive(
        tmp_path / "evil.tar.gz",
        [
            special("sub/sub2", tarfile.DIRTYPE),
            special("a", tarfile.SYMTYPE, "sub/sub2/b/.."),
            special("sub/sub2/b", tarfile.SYMTYPE, "../.."),
            reg("a/escaped.txt", b"gotcha"),
        ],
    )
    dest = tmp_path / "dest"
    with pytest.raises(UnsafeSandbox) as caught:
        unpack(archive, dest)
    assert caught.value.member == "a/escaped.txt"
    assert not list(tmp_path.rglob("escaped.txt"))


def test_link_left_pointing_out_is_removed_and_refused(tmp_path: Path) -> None:
    archive = evil_archive(
        tmp_path / "evil.tar.gz",
        [
            special("sub/sub2", tarfile.DIRTYPE),
            special("a", tarfile.SYMTYPE, "sub/sub2/b/.."),
            special("sub/sub2/b", tarfile.SYMTYPE, "../.."),
        ],
    )
    dest = tmp_path / "dest"
    with pytest.raises(UnsafeSandbox) as caught:
        unpack(archive, dest)
    assert caught.value.member == "a"
    assert not os.path.lexists(dest / "a")


def test_links_inside_the_tree_are_kept(tmp_path: Path) -> None:
    archive = evil_archive(
        tmp_path / "ok.tar.gz",
        [
            reg("data/real.txt", b"payload"),
            special("data/soft", tarfile.SYMTYPE, "real.txt"),
            special("hard", tarfile.LNKTYPE, "data/real.txt"),
        ],
    )
    dest = tmp_path / "dest"
    assert unpack(archive, dest) == ["data/real.txt", "data/soft", "hard"]
    assert (dest / "data" / "soft").read_bytes() == b"payload"
    assert (dest / "hard").read_bytes() == b"payload"


def test_too_many_members_are_refused(tmp_path: Path) -> None:
    archive = evil_archive(tmp_path / "many.tar.gz", [reg(f"f{i}") for i in range(10)])
    with pytest.raises(UnsafeSandbox, match="more than 5 members") as caught:
        unpack(archive, tmp_path / "dest", limits=SandboxLimits(max_files=5))
    assert caught.value.member == "f5"
    assert len(list((tmp_path / "dest").iterdir())) == 5


def test_too_many_unpacked_bytes_are_refused(tmp_path: Path) -> None:
    # Zeros compress ~1000:1: a small archive that unpacks large, the classic bomb.
    archive = evil_archive(
        tmp_path / "bomb.tar.gz", [reg("a", b"\0" * 600_000), reg("b", b"\0" * 600_000)]
    )
    assert archive.stat().st_size < 10_000
    with pytest.raises(UnsafeSandbox, match="bytes") as caught:
        unpack(archive, tmp_path / "dest", limits=SandboxLimits(max_unpacked_bytes=1_000_000))
    assert caught.value.member == "b"


def test_archive_over_the_size_limit_is_refused_before_reading(tmp_path: Path) -> None:
    archive = evil_archive(tmp_path / "big.tar.gz", [reg("a", os.urandom(5000))])
    with pytest.raises(UnsafeSandbox):
        unpack(archive, tmp_path / "dest", limits=SandboxLimits(max_bytes=1000))
    assert not (tmp_path / "dest").exists()


def test_garbage_is_an_unreadable_sandbox(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.tar.gz"
    bogus.write_bytes(b"this is not a tar archive at all" * 10)
    with pytest.raises(SandboxError, match="unreadable"):
        unpack(bogus, tmp_path / "dest")


def test_member_replacing_a_symlink_writes_a_file_not_through_it(tmp_path: Path) -> None:
    (tmp_path / "outside.txt").write_text("keep me")
    archive = evil_archive(
        tmp_path / "swap.tar.gz",
        [
            reg("outside.txt", b"decoy"),
            special("f", tarfile.SYMTYPE, "outside.txt"),
            reg("f", b"new content"),
        ],
    )
    dest = tmp_path / "dest"
    unpack(archive, dest)
    assert not (dest / "f").is_symlink()
    assert (dest / "f").read_bytes() == b"new content"
    assert (dest / "outside.txt").read_bytes() == b"decoy"
    assert (tmp_path / "outside.txt").read_text() == "keep me"
