"""Install sisock: the library, the hub and the data-node servers.

``hub/`` and ``servers/`` live at the top level of the repository (one
directory per component, as in sisock 0.x) and are installed as the
sub-packages ``sisock.hub`` and ``sisock.servers`` through ``package_dir``.
"""

from setuptools import setup

#: The notebook client (asyncio autobahn, arrays, the progress bar).
CLIENT = ["autobahn>=24.4", "numpy>=1.26", "msgpack>=1.0", "tqdm>=4.66"]
#: Every Twisted process: data nodes, the hub, ``sisock web``.
SERVER = ["autobahn[twisted]>=24.4", "twisted>=24.3"]
#: HDF5 archives (``sisock serve hdf5``, ``sisock generate``).
ARCHIVE = SERVER + ["h5py>=3.10", "hdf5plugin>=4.4"]
#: ``sisock serve modbus`` and ``sisock sim modbus``.
MODBUS = ARCHIVE + ["pymodbus>=3.8"]
#: ``sisock serve sensors`` (this machine's load, memory, temperatures).
SENSORS = SERVER + ["psutil>=5.9"]
#: ``sisock router`` (Crossbar) and its development TLS certificates.
ROUTER = SERVER + ["crossbar>=24.1", "cryptography>=42"]
#: ``DataResult.to_pandas`` / ``to_xarray``, plots and the example notebook.
NOTEBOOK = ["pandas>=2.1", "matplotlib>=3.8", "ipykernel>=6.29", "xarray>=2024.1"]
ALL = sorted(set(MODBUS + SENSORS + ROUTER + NOTEBOOK))

PACKAGES = [
    "sisock",
    "sisock.core",
    "sisock.consumer",
    "sisock.writes",
    "sisock.wamp",
    "sisock.site",
    "sisock.cli",
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
        "sisock.servers.modbus": ["*.toml"],
    },
    data_files=[("share/sisock/crossbar", ["crossbar/config.json"])],
    # What ``pip install sisock`` gives: the notebook client and nothing else
    # (no h5py, hdf5plugin, pymodbus, psutil or Twisted).
    install_requires=CLIENT,
    extras_require={
        "server": SERVER,
        "archive": ARCHIVE,
        "modbus": MODBUS,
        "sensors": SENSORS,
        "router": ROUTER,
        "notebook": NOTEBOOK,
        "all": ALL,
        # peers that benchmarks/ measure sisock against; never needed to run sisock
        "bench": [
            "duckdb>=1.1",
            "chdb>=2.0",
            "pyarrow>=15",
            "tsdownsample>=0.1.3",
            "py-spy>=0.3",
        ],  # py-spy: bench_scale says where a stuck process is
        "test": ALL
        + [
            "pytest>=8",
            "pytest-timeout>=2.3",
            "hypothesis>=6.100",
            "nbclient>=0.10",
            "nbformat>=5.10",
            "playwright>=1.40",
            "pyyaml>=6",
            "ruff>=0.6",
            "mypy>=1.10",
        ],
    },
    entry_points={
        "console_scripts": ["sisock = sisock.cli.main:main"],
        # servers run by ``sisock serve NAME``; a site's package adds its own here
        "sisock.servers": [
            "weather = sisock.servers.weather",
            "sensors = sisock.servers.sensors",
            "hdf5 = sisock.servers.hdf5_archive",
            "modbus = sisock.servers.modbus",
        ],
    },
)
