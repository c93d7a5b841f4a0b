"""The import contracts of pyproject.toml: the code keeps them, and a broken one names its modules.

`lint-imports` (import-linter) reads the contracts from pyproject.toml and every import of the
package, lazy ones inside functions included. The violations are planted in a copy of the
package in a temporary folder, never in the source tree.
"""

import pathlib
import shutil
import subprocess
import sys

import pytest

pytest.importorskip("importlinter")

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _lint_imports(cwd: pathlib.Path) -> subprocess.CompletedProcess:
    # lint-imports puts its working folder first on sys.path, so it reads the packages there.
    return subprocess.run(
        [
            sys.executable,
            "-c",
            "from importlinter.cli import lint_imports_command; lint_imports_command()",
            "--no-cache",
            "--no-logo",
        ],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_code_keeps_every_contract():
    result = _lint_imports(ROOT)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "xraygan_jax layers: each imports only from the layers below it KEPT" in output
    assert " 0 broken." in output


@pytest.fixture
def copy(tmp_path):
    """A copy of the two root packages and pyproject.toml, to plant violations in."""
    for package in ("xraygan_jax", "experiments"):
        shutil.copytree(
            ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


_LAZY_UPWARD = """

def _plot_of_a_run(workdir):
    from xraygan_jax import gan_loop

    return gan_loop
"""


@pytest.mark.parametrize(
    "module, addition, expected",
    [
        # A lazy import inside a function, from the lowest layer up to an orchestrator.
        (
            "xraygan_jax/data/phantom.py",
            _LAZY_UPWARD,
            "xraygan_jax.data.phantom -> xraygan_jax.gan_loop",
        ),
        # The sampler drawing pictures again: train/ under viz.
        (
            "xraygan_jax/train/sampling.py",
            "\nfrom xraygan_jax import viz  # noqa: E402\n",
            "xraygan_jax.train.sampling -> xraygan_jax.viz",
        ),
    ],
)
def test_an_upward_import_fails_naming_both_modules(copy, module, addition, expected):
    with open(copy / module, "a") as file:
        file.write(addition)
    result = _lint_imports(copy)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "xraygan_jax layers: each imports only from the layers below it BROKEN" in output
    assert expected in output


def test_a_module_outside_every_layer_fails_naming_it(copy):
    (copy / "xraygan_jax" / "scratch.py").write_text('"""Somewhere to put things."""\n')
    result = _lint_imports(copy)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "xraygan_jax.scratch" in output
