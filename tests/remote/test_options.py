"""Every launcher option is checked at the door, with an error that names it; the ssh
command line is what docs/remote.md says."""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path
from typing import Any

import pytest

import juicectl
from juicectl import LaunchSpec, ProcessController, local, prefix, ssh
from juicectl.launch import LocalLauncher, PrefixLauncher, SshLauncher


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"host": ""}, "host"),
        ({"host": "-oProxyCommand=x"}, "host"),
        ({"host": "a b"}, "host"),
        ({"host": 3}, "host"),
        ({"user": "-x"}, "user"),
        ({"user": "a@b"}, "user"),
        ({"user": "a\nb"}, "user"),
        ({"port": 0}, "port"),
        ({"port": 70000}, "port"),
        ({"port": "22"}, "port"),
        ({"port": True}, "port"),
        ({"identity": "/no/such/key"}, "identity"),
        ({"known_hosts": "/"}, "known_hosts"),
        ({"config": "/no/such/config"}, "config"),
        ({"options": ["Compression=yes"]}, "options"),
        ({"options": {"Bad Name": "x"}}, "options"),
        ({"options": {"ControlPath": "/tmp/x"}}, "ControlPath"),
        ({"options": {"BatchMode": "no"}}, "BatchMode"),
        ({"options": {"Compression": "a\nb"}}, "options"),
        ({"options": {"Compression": 1.5}}, "options"),
        ({"control_master": 1}, "control_master"),
        ({"keepalive": (0, 3)}, "keepalive"),
        ({"keepalive": (5,)}, "keepalive"),
        ({"keepalive": (1.5, 3)}, "keepalive"),
        ({"keepalive": "5,3"}, "keepalive"),
        ({"python": ""}, "python"),
        ({"python": "python3\r"}, "python"),
        ({"shim": "yes"}, "shim"),
        ({"host": "deploy@example.org"}, "give the user as user="),
        ({"user": "a b"}, "user"),
        ({"options": {"Compression": ""}}, "options"),
        ({"options": ("ab",)}, "options must be a mapping"),
        ({"options": ("Compression", "yes")}, "options must be a mapping"),
        # ssh keeps the first value it meets, the launcher's: yours would be ignored.
        ({"options": {"ServerAliveInterval": 60}}, "ServerAliveInterval is set by keepalive="),
        ({"options": {"serveralivecountmax": 9}}, "serveralivecountmax is set by keepalive="),
        ({"port": 22, "options": {"Port": 2222}}, "Port is set by port="),
        ({"user": "w", "options": {"User": "x"}}, "User is set by user="),
        ({"known_hosts": os.devnull, "options": {"StrictHostKeyChecking": "accept-new"}},
         "StrictHostKeyChecking is set by known_hosts="),
    ],
)
def test_a_bad_ssh_option_is_named(options: dict[str, Any], named: str) -> None:
    options = {"host": "example.org", **options}
    host = options.pop("host")
    with pytest.raises((TypeError, ValueError), match=named):
        ssh(host, **options)


@pytest.mark.parametrize(
    ("words", "options", "named"),
    [
        ([], {}, "prefix"),
        ("docker exec -i box", {}, "prefix"),
        (["docker", 3], {}, "words"),
        (["", "x"], {}, "program"),
        (["a\0b"], {}, "NUL"),
        (["docker"], {"shim": None}, "shim"),
        (["docker"], {"python": 3}, "python"),
        (["docker"], {"shell_command": "no"}, "shell_command"),
    ],
)
def test_a_bad_prefix_option_is_named(words: Any, options: dict[str, Any], named: str) -> None:
    with pytest.raises((TypeError, ValueError), match=named):
        prefix(words, **options)


def test_launch_spec_names_a_launcher_that_is_not_one() -> None:
    with pytest.raises(TypeError, match="launcher must be a launcher"):
        LaunchSpec(["worker"], launcher="ssh://host")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="launcher must be a launcher"):
        LaunchSpec(["worker"], launcher=SshLauncher)  # type: ignore[arg-type]


def test_a_cwd_behind_a_prefix_without_shim_or_shell_is_refused_at_the_door() -> None:
    with pytest.raises(ValueError, match="cwd '/srv' cannot be set"):
        ProcessController.start(["worker"], cwd="/srv", launcher=prefix(["env"], shim=False))


def test_a_remote_cwd_is_not_looked_for_here() -> None:
    spec = LaunchSpec(["worker"], cwd="/no/such/dir/here", launcher=ssh("example.org"))
    assert spec.cwd == "/no/such/dir/here"
    with pytest.raises(ValueError, match="does not exist"):
        LaunchSpec(["worker"], cwd="/no/such/dir/here")


def test_the_launchers_are_exported_and_are_values(tmp_path: Path) -> None:
    assert juicectl.local is local and juicectl.ssh is ssh and juicectl.prefix is prefix
    assert local() == LocalLauncher() == LaunchSpec([sys.executable]).launcher
    key = tmp_path / "key"
    key.write_text("")
    assert ssh("h", port=22, identity=key) == ssh("h", port=22, identity=str(key))
    assert hash(ssh("h", options={"Compression": True}))
    # IdentityFile adds a key to try: one more beside identity= is not ignored.
    two_keys = ssh("h", identity=key, options={"IdentityFile": str(key)})
    assert ("IdentityFile", str(key)) in two_keys.options
    # Without the argument that would set it, the option is yours to give.
    assert ("Port", "2222") in ssh("h", options={"Port": 2222}).options
    assert ssh("h", keepalive=None, options={"ServerAliveInterval": 60}).options == (
        ("ServerAliveInterval", "60"),
    )
    assert dataclasses.replace(ssh("h", options={"Compression": True}), port=22).options == (
        ("Compression", "yes"),
    )
    assert prefix(["docker", "exec", "-i", "box"]) == PrefixLauncher(
        ("docker", "exec", "-i", "box")
    )
    assert "local" in dir(juicectl) and "ssh" in juicectl.__all__


def test_the_ssh_command_line(tmp_path: Path) -> None:
    key = tmp_path / "key"
    key.write_text("")
    launcher = ssh("db-1", user="w", port=2222, identity=key, known_hosts=os.devnull,
                   options={"Compression": True}, keepalive=(2, 4), control_master=False)
    spec = LaunchSpec(["worker", "a b"], env={"X": "1"}, launcher=launcher)
    invocation = launcher.invocation(spec)
    argv = list(invocation.argv)
    assert argv[0].endswith("ssh")
    joined = " ".join(argv[:-3])
    for part in ("-T", "-e none", "-o BatchMode=yes", "-o ServerAliveInterval=2",
                 "-o ServerAliveCountMax=4", "-l w", "-p 2222", f'-o IdentityFile="{key}"',
                 "-o IdentitiesOnly=yes", f'-o UserKnownHostsFile="{os.devnull}"',
                 "-o StrictHostKeyChecking=yes", "-o Compression=yes"):
        assert part in joined
    assert "ControlPath" not in joined
    assert argv[-3:-1] == ["--", "db-1"]
    assert argv[-1].startswith("exec python3 -I -S -c ")
    assert argv[-1].endswith(" -i -E X=1 -- worker 'a b'")
    assert invocation.command == ("worker", "a b")
    assert invocation.where == "ssh w@db-1:2222"
    assert invocation.env is None and invocation.cwd is None


def test_the_ssh_launcher_needs_the_ssh_program(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    launcher = ssh("db-1")
    with pytest.raises(juicectl.ProcessLaunchError, match="needs OpenSSH's client"):
        launcher.invocation(LaunchSpec(["worker"], launcher=launcher))


def test_a_prefix_program_that_is_missing_is_a_launch_error() -> None:
    launcher = prefix(["no-such-prefix-program", "-i"])
    with pytest.raises(juicectl.ProcessLaunchError,
                       match=r"prefix no-such-prefix-program -i: .*not on PATH"):
        launcher.invocation(LaunchSpec(["worker"], launcher=launcher))


def test_key_paths_are_read_as_ssh_reads_them_and_made_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # ~ is the user's home; a relative path is the application's directory's, and must be
    # absolute by the time the connection master (which runs in /) reads it.
    (tmp_path / ".ssh").mkdir()
    key = tmp_path / ".ssh" / "batch_ed25519"
    key.write_text("not really a key")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert ssh("h", identity="~/.ssh/batch_ed25519").identity == str(key)
    monkeypatch.chdir(tmp_path / ".ssh")
    launcher = ssh("h", identity="batch_ed25519", known_hosts="batch_ed25519")
    assert launcher.identity == str(key) and launcher.known_hosts == str(key)
    with pytest.raises(ValueError, match="identity '~/nothing' is not a file"):
        ssh("h", identity="~/nothing")


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("/keys/my key", '"/keys/my key"'),  # one path, not a list of two
        ("/keys%d/key", '"/keys%%d/key"'),  # not the home directory
        ('/k"ey\\s', '"/k\\"ey\\\\s"'),
    ],
    ids=["space", "percent", "quote-and-backslash"],
)
def test_paths_reach_ssh_as_they_are(tmp_path: Path, path: str, value: str) -> None:
    # ssh splits an -o value at spaces unless quoted, reads backslash escapes inside the
    # quotes, and expands % tokens in IdentityFile, UserKnownHostsFile and ControlPath.
    key = tmp_path / path.lstrip("/")
    key.parent.mkdir(parents=True, exist_ok=True)
    key.write_text("")
    launcher = ssh("db-1", identity=key, known_hosts=key, control_master=False)
    argv = list(launcher.invocation(LaunchSpec(["worker"], launcher=launcher)).argv)
    inside = value.replace('"/', f'"{tmp_path}/', 1)
    assert f"IdentityFile={inside}" in argv and f"UserKnownHostsFile={inside}" in argv
