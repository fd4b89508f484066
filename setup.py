"""Only one thing pyproject.toml cannot say: the templates live at the repository's top (where
translators and every branch edit them), yet a wheel must carry them inside the package. build_py copies
them to ``listserv/templates/`` in the build tree; ``config.SHIPPED_TEMPLATES`` looks there first."""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

TEMPLATES = Path(__file__).resolve().parent / "templates"


class BuildWithTemplates(build_py):
    def run(self) -> None:
        super().run()
        if not self.editable_mode:  # an editable install reads them from the checkout
            target = Path(self.build_lib) / "listserv" / "templates"
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(TEMPLATES, target, ignore=shutil.ignore_patterns("README.md"))


setup(cmdclass={"build_py": BuildWithTemplates})
