"""How gymnasium finds the ids in a fresh interpreter: import, entry point, and the .pth hook.

Each test runs a fresh Python in a subprocess (about 0.5 s each: gymnasium's import).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import envs
from envs import gymnasium_plugin

REPO = Path(envs.__file__).resolve().parent.parent


def _python(
    code: str, cwd: Path, site_dir: Path | None = None, repo_on_path: bool = True
) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter.

    :param site_dir: processed like site-packages (its ``.pth`` files run) before ``code``.
    :param repo_on_path: put the repository on ``PYTHONPATH`` (else rely on the installed package).
    """
    prelude = f"import site; site.addsitedir({str(site_dir)!r})\n" if site_dir is not None else ""
    env = dict(os.environ)
    if repo_on_path:
        env["PYTHONPATH"] = str(REPO)
    return subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(code)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _ok(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_make_with_module_prefix_in_fresh_interpreter(tmp_path):
    out = _ok(
        _python(
            """
            import gymnasium
            env = gymnasium.make("envs:rl_warmup/TMaze-v0")
            print(env.unwrapped.length, env.unwrapped.max_steps)
            """,
            tmp_path,
        )
    )
    assert out.split() == ["10", "29"]


def test_entry_point_is_declared_for_the_namespace():
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    group = pyproject["project"]["entry-points"]["gymnasium.envs"]
    # gymnasium < 1.0 registers under namespace(<entry point name>): it must be our namespace
    assert group == {envs.NAMESPACE: "envs:register_envs"}


def test_installed_entry_point_registers_like_gymnasium_0_29(tmp_path):
    """Emulates gymnasium 0.29's ``load_plugin_envs``: ``with namespace(ep.name): ep.load()()``.

    Runs outside the repository: a stale ``rl_warmup.egg-info`` in the working directory would
    shadow the installed metadata (``importlib.metadata`` searches ``sys.path`` in order).
    """
    found = _python(
        """
        from importlib.metadata import entry_points
        print(any(e.name == "rl_warmup" for e in entry_points(group="gymnasium.envs")))
        """,
        tmp_path,
        repo_on_path=False,
    )
    if _ok(found).split() != ["True"]:
        pytest.skip("the installed metadata has no gymnasium.envs entry point: pip install -e .")
    out = _ok(
        _python(
            """
            import gymnasium
            from importlib.metadata import entry_points
            from gymnasium.envs.registration import namespace
            (ep,) = [e for e in entry_points(group="gymnasium.envs") if e.name == "rl_warmup"]
            with namespace(ep.name):
                ep.load()()
            import envs
            ids = {i for i in gymnasium.registry if i.startswith("rl_warmup/")}
            print(ids == set(envs.ENVIRONMENTS), gymnasium.make("rl_warmup/TMaze-v0").unwrapped.length)
            """,
            tmp_path,
            repo_on_path=False,
        )
    )
    assert out.split() == ["True", "10"]


def test_pth_hook_registers_when_gymnasium_is_imported(tmp_path):
    site_dir = tmp_path / "site"
    site_dir.mkdir()
    path = gymnasium_plugin.install(site_dir)
    assert path.name == gymnasium_plugin.PTH_NAME and len(path.read_text().splitlines()) == 1
    out = _ok(
        _python(
            """
            import sys
            # start-up stays cheap: nothing heavy imported by the hook
            print(all(m not in sys.modules for m in ("envs", "gymnasium", "numpy")))
            import gymnasium
            print("envs" in sys.modules, "envs.tmaze" in sys.modules, "minigrid" in sys.modules)
            env = gymnasium.make("rl_warmup/TMaze-v0")
            print(type(env.unwrapped).__name__, type(gymnasium.__spec__.loader).__name__)
            """,
            tmp_path,
            site_dir=site_dir,
        )
    )
    assert out.split() == ["True", "True", "False", "False", "TMazeEnv", "SourceFileLoader"]
    assert gymnasium_plugin.uninstall(site_dir) and not path.exists()
    assert not gymnasium_plugin.uninstall(site_dir)


def test_pth_hook_without_the_hook_file_is_harmless(tmp_path):
    site_dir = tmp_path / "site"
    site_dir.mkdir()
    (site_dir / gymnasium_plugin.PTH_NAME).write_text(
        gymnasium_plugin.pth_line(tmp_path / "gone.py")
    )
    code = "import gymnasium; print('rl_warmup/TMaze-v0' in gymnasium.registry)"
    result = _python(code, tmp_path, site_dir)
    # The stale line adds nothing: the outcome is that of an interpreter without it ("False",
    # or "True" where `make install` put the real hook into site-packages), and nothing on stderr.
    empty_site = tmp_path / "empty"
    empty_site.mkdir()
    baseline = _python(code, tmp_path, empty_site)
    assert _ok(result).split() == _ok(baseline).split() and result.stderr == ""


def test_pth_hook_leaves_another_envs_package_alone(tmp_path):
    """A user's own top-level ``envs`` package (no marker) is neither imported nor shadowed."""
    site_dir = tmp_path / "site"
    site_dir.mkdir()
    gymnasium_plugin.install(site_dir)
    decoy = tmp_path / "project"
    (decoy / "envs").mkdir(parents=True)
    (decoy / "envs" / "__init__.py").write_text("raise RuntimeError('decoy imported')\n")
    code = f"""
        import sys
        sys.path.insert(0, {str(decoy)!r})
        import gymnasium
        print("envs" in sys.modules, "rl_warmup/TMaze-v0" in gymnasium.registry)
        """
    result = _python(code, tmp_path, site_dir)
    assert _ok(result).split() == ["False", "False"] and result.stderr == ""


def test_pth_hook_when_envs_is_imported_first(tmp_path):
    site_dir = tmp_path / "site"
    site_dir.mkdir()
    gymnasium_plugin.install(site_dir)
    out = _ok(
        _python(
            """
            import envs, gymnasium
            print(len([i for i in gymnasium.registry if i.startswith("rl_warmup/")]) == len(envs.ENVIRONMENTS))
            """,
            tmp_path,
            site_dir,
        )
    )
    assert out.split() == ["True"]


def test_plugin_command_line(tmp_path, capsys):
    assert gymnasium_plugin.main(["status", "--site-dir", str(tmp_path)]) == 0
    assert "not installed" in capsys.readouterr().out
    gymnasium_plugin.main(["install", "--site-dir", str(tmp_path)])
    gymnasium_plugin.main(["status", "--site-dir", str(tmp_path)])
    assert ": installed" in capsys.readouterr().out
    gymnasium_plugin.main(["uninstall", "--site-dir", str(tmp_path)])
    assert not (tmp_path / gymnasium_plugin.PTH_NAME).exists()


def test_plain_make_in_this_environment(tmp_path):
    """Where the hook is installed in this interpreter's site-packages, no import is needed."""
    if not (gymnasium_plugin.default_site_dir() / gymnasium_plugin.PTH_NAME).exists():
        pytest.skip("hook not installed here: python -m envs.gymnasium_plugin install")
    out = _ok(
        _python(
            "import gymnasium; print(gymnasium.make('rl_warmup/TMaze-v0').unwrapped.length)",
            tmp_path,
        )
    )
    assert out.split() == ["10"]


def test_import_envs_is_cheap(tmp_path):
    out = _ok(
        _python(
            """
            import sys, envs
            heavy = ("envs.tmaze", "envs.minigrid_memory", "minigrid", "torch", "rl_warmup", "stable_baselines3")
            print([m for m in heavy if m in sys.modules])
            envs.TMazeEnv
            print("envs.tmaze" in sys.modules)
            """,
            tmp_path,
        )
    )
    assert out.split("\n")[:2] == ["[]", "True"]
