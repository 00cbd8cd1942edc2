"""pip install --no-build-isolation . in a fresh venv, then import massact from another folder."""
import os
import subprocess
import sys

from conftest import SOURCE, model_dir


def test_pip_install_in_a_fresh_venv_then_import_elsewhere(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True)
    py = str(venv / "bin" / "python")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PIP_NO_INDEX"] = "1"  # offline
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    # (the ctest build tree's configured CMake folder is reused: the module is not compiled a second time)
    env["MASSACT_CMAKE_BUILD_DIR"] = os.environ.get("MASSACT_BUILD_DIR", os.path.join(SOURCE, "build"))
    r = subprocess.run([py, "-m", "pip", "install", "--no-build-isolation", "--no-deps", SOURCE], cwd=tmp_path, env=env,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    code = ("import massact; m = massact.load(%r); print(massact.__file__); print(m.cfg['n_layers'], massact.__version__)"
            % model_dir("tiny-llama"))
    r = subprocess.run([py, "-c", code], cwd=elsewhere, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    where, info = r.stdout.strip().splitlines()
    assert where.startswith(str(venv)), where  # the installed copy, not the build tree
    assert info.split()[0] == "8"
