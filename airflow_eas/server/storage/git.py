"""``git`` mounts: a checkout per commit, cloned once into the service's cache.

Credentials go to git in its environment, never on a command line or into ``.git/config``,
and are scrubbed from every message.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import subprocess
import tempfile
import urllib.parse
from pathlib import Path

from airflow_eas.errors import DeployFailed
from airflow_eas.server.storage.redact import scrub
from airflow_eas.spec import GitMount

GIT_TIMEOUT_S = 300


def _git_env(git: GitMount) -> dict[str, str]:
    env = {
        **os.environ,
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_ASKPASS": "/bin/false",
        "GIT_SSH_COMMAND": "ssh -o BatchMode=yes",
        "GIT_CONFIG_NOSYSTEM": "1",
    }
    if git.username or git.password:
        basic = base64.b64encode(f"{git.username or ''}:{git.password or ''}".encode()).decode()
        # config through the environment: on no command line, in no .git/config
        env.update({"GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "http.extraHeader",
                    "GIT_CONFIG_VALUE_0": f"Authorization: Basic {basic}"})
    return env


def _git_secrets(git: GitMount) -> list[str | None]:
    out: list[str | None] = [git.password]
    if git.username or git.password:
        out.append(base64.b64encode(f"{git.username or ''}:{git.password or ''}".encode()).decode())
    userinfo = urllib.parse.urlsplit(git.repo).password if "://" in git.repo else None
    out.append(userinfo)
    return out


def _git(args: list[str], git: GitMount, where: str, cwd: Path | None = None, timeout: float = GIT_TIMEOUT_S) -> str:
    try:
        proc = subprocess.run(
            ["git", *args], cwd=cwd, env=_git_env(git), capture_output=True, text=True, timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
    except FileNotFoundError:
        raise DeployFailed(f"{where}: git is not installed on the server host") from None
    except subprocess.TimeoutExpired:
        raise DeployFailed(f"{where}: git {args[0]} of {scrub(git.repo, _git_secrets(git))} took over "
                           f"{timeout:.0f} s") from None
    if proc.returncode != 0:
        lines = [ln.strip() for ln in (proc.stderr or proc.stdout).splitlines() if ln.strip()]
        detail = " ".join(lines[-2:]) or f"exit code {proc.returncode}"
        raise DeployFailed(scrub(f"{where}: git {args[0]} of {git.repo} failed: {detail}", _git_secrets(git)))
    return proc.stdout


def clone(git: GitMount, cache: Path, where: str) -> Path:
    """A checkout of the repo at its commit (pinned, or the branch's head), cloned once per commit."""
    commit = git.commit
    if not commit:
        ref = f"refs/heads/{git.branch}" if git.branch else "HEAD"
        out = _git(["ls-remote", "--", git.repo, ref], git, where, timeout=60).split()
        if not out:
            raise DeployFailed(scrub(f"{where}: branch {git.branch!r} not found in {git.repo}", _git_secrets(git)))
        commit = out[0]
    repo_key = hashlib.sha256(scrub(git.repo, []).encode()).hexdigest()[:12]
    target = cache / f"{repo_key}-{commit[:40]}"
    if (target / ".git").is_dir():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".clone-", dir=cache))
    try:
        if git.commit:
            _git(["clone", "--quiet", "--no-checkout", "--", git.repo, str(tmp)], git, where)
            _git(["checkout", "--quiet", "--detach", git.commit], git, where, cwd=tmp)
        else:
            branch = ["--branch", git.branch] if git.branch else []
            _git(["clone", "--quiet", "--depth", "1", *branch, "--", git.repo, str(tmp)], git, where)
        _git(["remote", "set-url", "origin", scrub(git.repo, [])], git, where, cwd=tmp)
        os.replace(tmp, target)
    except OSError as exc:
        if not (target / ".git").is_dir():
            raise DeployFailed(f"{where}: cannot store the clone in {cache}: {exc.strerror}") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


