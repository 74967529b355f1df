"""The suite runs against the installed wheel (scripts/test.sh builds it with `maturin build
--release` and pip-installs the .whl), not the source tree: the package comes from site-packages,
the wheel is abi3 and manylinux-tagged, and its extension carries no symbols or debug info."""

import importlib.metadata
import os
import pathlib
import struct
import sysconfig
from typing import List

import workload_auth

SOURCE_TREE = pathlib.Path(__file__).resolve().parents[2] / "bindings" / "python"


def _installed_extension() -> pathlib.Path:
    native = pathlib.Path(workload_auth._native.__file__).resolve()  # type: ignore[attr-defined]
    assert native.name == "_native.abi3.so", native
    return native


def test_the_package_is_imported_from_the_installed_wheel() -> None:
    package = pathlib.Path(workload_auth.__file__).resolve().parent
    site = pathlib.Path(sysconfig.get_paths()["purelib"]).resolve()
    assert package.parent == site, f"{package} is not the installed package (in {site})"
    assert SOURCE_TREE not in package.parents
    assert _installed_extension().parent == package
    dist = importlib.metadata.distribution("workload-auth")
    files = [str(f) for f in dist.files or []]
    assert "workload_auth/_native.abi3.so" in files
    assert "workload_auth/_native.pyi" in files and "workload_auth/py.typed" in files


def test_the_wheel_is_abi3_and_manylinux() -> None:
    dist = importlib.metadata.distribution("workload-auth")
    wheel = dist.read_text("WHEEL") or ""
    tags = [line.split(":", 1)[1].strip() for line in wheel.splitlines() if line.startswith("Tag:")]
    assert tags, wheel
    for tag in tags:
        python, abi, platform = tag.split("-")
        assert (python, abi) == ("cp39", "abi3"), tag
        assert platform.startswith("manylinux_"), tag  # not the untagged linux_x86_64


def _section_names(path: pathlib.Path) -> List[str]:
    """The section names of an ELF64 little-endian shared object."""
    data = path.read_bytes()
    assert data[:4] == b"\x7fELF" and data[4] == 2 and data[5] == 1, "not ELF64 little-endian"
    (shoff,) = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    assert shoff and shnum and shstrndx < shnum

    def header(i: int) -> "tuple[int, int, int]":
        base = shoff + i * shentsize
        (name,) = struct.unpack_from("<I", data, base)
        offset, size = struct.unpack_from("<QQ", data, base + 0x18)
        return name, offset, size

    _, strtab, strsize = header(shstrndx)
    names = []
    for i in range(shnum):
        name, _, _ = header(i)
        end = data.index(b"\0", strtab + name, strtab + strsize)
        names.append(data[strtab + name : end].decode("ascii", "replace"))
    return names


def test_the_extension_is_stripped() -> None:
    native = _installed_extension()
    names = _section_names(native)
    assert ".dynsym" in names and ".text" in names  # the parse found the real sections
    assert not [n for n in names if n.startswith(".debug")], names
    assert ".symtab" not in names, names
    # The unstripped debug build was 31.7 MB; stripped release code is a fraction of that.
    assert os.path.getsize(native) < 16 * 1024 * 1024
