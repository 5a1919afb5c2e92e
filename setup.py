"""The model catalogue lives at the top of the checkout, in models/; a wheel carries it as
assistant/models/, where assistant/catalogue.py looks first. Everything else is in pyproject.toml."""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py


class WithCatalogue(build_py):
    def run(self) -> None:
        super().run()
        target = Path(self.build_lib) / "assistant" / "models"
        self.mkpath(str(target))
        for manifest in sorted(Path(__file__).resolve().parent.glob("models/*.toml")):
            self.copy_file(str(manifest), str(target / manifest.name))


setup(cmdclass={"build_py": WithCatalogue})
