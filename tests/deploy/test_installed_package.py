"""Tollgate installed from its wheel, away from its checkout, is complete.

The wheel must carry the templates and static files; an installed Tollgate renders
its pages, passes its checks, and collects static files to a STATIC_ROOT outside
site-packages.
"""

from __future__ import annotations

import json
import os
import site
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from tests.deploy.hostrun import ROOT

SCRIPT = """
import json, django
django.setup()
from django.conf import settings
from django.template.loader import render_to_string
from django.test import RequestFactory
import platform_core
page = render_to_string("web/index.html", request=RequestFactory().get("/"))
print(json.dumps({
    "package": platform_core.__file__,
    "static_root": str(settings.STATIC_ROOT),
    "page": page[:20000],
}))
"""


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict:
    """A venv holding only the wheel, seeing this environment's dependencies."""
    tmp = tmp_path_factory.mktemp("installed")
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q",
         "-w", str(tmp / "dist"), str(ROOT)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert build.returncode == 0, build.stderr
    wheel = next((tmp / "dist").glob("tollgate-*.whl"))
    target = tmp / "venv"
    venv.create(target, with_pip=False)
    python = target / "bin" / "python"
    ours = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    # Dependencies from this environment, after the venv's own site-packages.
    Path(ours, "zz_dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    install = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q",
         str(wheel)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert install.returncode == 0, install.stderr
    workdir = tmp / "work"
    workdir.mkdir()
    return {"python": str(python), "site": ours, "workdir": workdir, "wheel": wheel}


def run_installed(installed: dict, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHONPATH", "STATIC_"))}
    env["DJANGO_SETTINGS_MODULE"] = "platform_core.settings"
    # The example plugins here are editable installs of the checkout: not this venv's.
    env["TOLLGATE_PLUGINS_AUTOLOAD"] = "0"
    return subprocess.run(
        [installed["python"], *args],
        cwd=installed["workdir"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_wheel_carries_templates_and_static_files(installed):
    import zipfile

    names = set(zipfile.ZipFile(installed["wheel"]).namelist())
    assert "webclient/templates/web/index.html" in names
    assert "webclient/static/web/app.css" in names
    assert "billing/templates/admin/billing/order/refund_form.html" in names


def test_the_development_tools_stay_out_of_production(installed):
    """The wheel carries the test kit and the development stack and Stripe for a plugin
    author's suite, inert without the `local` extra: localstripe (GPL-3.0) is never a
    dependency of the product, and the production image copies none of them."""
    import zipfile

    wheel = zipfile.ZipFile(installed["wheel"])
    [metadata] = [n for n in wheel.namelist() if n.endswith(".dist-info/METADATA")]
    requires = [
        line
        for line in wheel.read(metadata).decode().splitlines()
        if line.startswith("Requires-Dist")
    ]
    localstripe = [line for line in requires if "localstripe" in line]
    assert localstripe and all("extra ==" in line for line in localstripe), requires
    dockerfile = (Path(__file__).resolve().parents[2] / "Dockerfile").read_text()
    for tool in ("devstripe", "devstack", "tollgate_testing", "localstripe"):
        assert f"COPY {tool}" not in dockerfile


def test_an_installed_tollgate_renders_its_pages(installed):
    result = run_installed(installed, "-c", SCRIPT)
    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stdout.strip().splitlines()[-1])

    assert loaded["package"].startswith(installed["site"]), loaded["package"]
    assert "<html" in loaded["page"].lower()
    assert loaded["static_root"] == str(installed["workdir"] / "var" / "static")


def test_an_installed_tollgate_passes_its_checks_and_collects_static_files(installed):
    check = run_installed(installed, "-m", "django", "check")
    assert check.returncode == 0, check.stderr

    collect = run_installed(installed, "-m", "django", "collectstatic", "--noinput")
    assert collect.returncode == 0, collect.stderr
    assert (installed["workdir"] / "var" / "static" / "web" / "app.css").is_file()
    assert (installed["workdir"] / "var" / "static" / "admin").is_dir()
