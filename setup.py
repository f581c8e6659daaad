"""Packaging for keras_newton (distribution name ``keras-newton``)."""

from setuptools import find_packages, setup

# MkDocs with the Material theme; mkdocstrings' Python handler (griffe) writes
# the API reference from the docstrings.
DOCS_REQUIRES = ["mkdocs>=1.6,<2", "mkdocs-material>=9.5", "mkdocstrings[python]>=0.26"]

setup(
    name="keras-newton",
    version="0.1.0",
    description=(
        "Newton losses (Petersen et al., NeurIPS 2024) and differentiable "
        "sorting / shortest-path relaxations for Keras 3 on TensorFlow."
    ),
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["keras_newton", "keras_newton.*"]),
    license="Apache-2.0",
    python_requires=">=3.10",
    install_requires=[
        "tensorflow>=2.16",
        "keras>=3.0",
        "tensorflow-probability>=0.24",
        # TFP imports tf-keras eagerly; it must match the TensorFlow minor.
        "tf-keras>=2.16",
        "tensorflow-datasets>=4.9",
        "numpy",
        # TFDS builders (download_and_prepare) need it and do not declare it.
        "importlib_resources",
    ],
    extras_require={
        # The documentation build is one of the tests (tests/test_docs_build.py);
        # scipy: Welch t-tests of the benchmark tables (bench/results.py);
        # scikit-learn: the offline digits; matplotlib: the figures.
        "test": ["pytest>=7", "pytest-xdist", "hypothesis>=6", "scikit-learn", "matplotlib",
                 "scipy", *DOCS_REQUIRES],
        "bench": ["scikit-learn", "matplotlib", "scipy"],
        "docs": DOCS_REQUIRES,
    },
    entry_points={
        "console_scripts": [
            "keras-newton-bench = keras_newton.bench.__main__:main",
        ],
    },
)
