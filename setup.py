"""Install sisock: the library, the hub and the data-node servers.

``hub/`` and ``servers/`` live at the top level of the repository (one
directory per component, as in sisock 0.x) and are installed as the
sub-packages ``sisock.hub`` and ``sisock.servers`` through ``package_dir``.
"""

from setuptools import setup

PACKAGES = [
    "sisock",
    "sisock.archive",
    "sisock.web",
    "sisock.hub",
    "sisock.servers",
    "sisock.servers.weather",
    "sisock.servers.sensors",
    "sisock.servers.hdf5_archive",
    "sisock.servers.modbus",
]

setup(
    name="sisock",
    version="1.0.0.dev0",
    description="Serve instrument timestreams over WAMP (Crossbar.io)",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.11",
    packages=PACKAGES,
    package_dir={
        "sisock": "sisock",
        "sisock.hub": "hub",
        "sisock.servers": "servers",
    },
    package_data={
        "sisock.servers.weather": ["example_data/*.dat"],
        "sisock.servers.modbus": ["*.toml"],
    },
    data_files=[("share/sisock/crossbar", ["crossbar/config.json"])],
    install_requires=[
        "autobahn[twisted,serialization]>=24.4",
        "twisted>=24.3",
        "numpy>=1.26",
        "h5py>=3.10",
        "hdf5plugin>=4.4",
        "pymodbus>=3.8",
        "psutil>=5.9",
        "msgpack>=1.0",
        "cbor2>=5.4",
        "tqdm>=4.66",
        "cryptography>=42",
    ],
    extras_require={
        "router": ["crossbar>=24.1"],
        "notebook": ["pandas>=2.1", "matplotlib>=3.8", "ipykernel>=6.29"],
        # peers that benchmarks/ measure sisock against; never needed to run sisock
        "bench": ["duckdb>=1.1", "chdb>=2.0", "pyarrow>=15", "tsdownsample>=0.1.3"],
        "test": [
            "crossbar>=24.1",
            "pytest>=8",
            "pytest-timeout>=2.3",
            "hypothesis>=6.100",
            "pandas>=2.1",
            "nbclient>=0.10",
            "nbformat>=5.10",
            "ipykernel>=6.29",
            "matplotlib>=3.8",
            "xarray>=2024.1",
            "playwright>=1.40",
            "pyyaml>=6",
        ],
    },
    entry_points={"console_scripts": ["sisock = sisock.cli:main"]},
)
