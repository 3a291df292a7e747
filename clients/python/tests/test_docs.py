"""docs/python.md against the package: test authors write tests from that page alone, so what
it says of the errors and the names under ``warren.`` must be what the package has. Runs where
the repository is (skipped inside an environment, whose root holds only the tests)."""

import inspect
import pathlib
import re

import pytest

import warren
from warren import errors

_HERE = pathlib.Path(__file__).resolve()
DOC = _HERE.parents[3] / "docs" / "python.md" if len(_HERE.parents) > 3 else _HERE.parent / "absent"
pytestmark = pytest.mark.skipif(not DOC.is_file(), reason="docs/python.md is not here (inside an environment)")

FAMILIES = {"CapabilityError", "MailboxError", "RequestError"}


def doc_text():
    return DOC.read_text(encoding="utf-8")


def section(text, title):
    start = text.index(f"## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start:] if end < 0 else text[start:end]


def test_the_errors_table_lists_every_kernel_error_with_its_code_and_family():
    rows = [line for line in section(doc_text(), "Errors").splitlines() if line.startswith("| `") or line.startswith("| on")]
    listed = {}
    for row in rows:
        family, classes = [cell.strip() for cell in row.strip("|").split("|")][:2]
        for name, code in re.findall(r"`(\w+)` \((\d+)", classes):
            listed[name] = (int(code), family.strip("`"))
    documented_codes = {code for code, _ in listed.values()}
    assert documented_codes == set(errors.BY_CODE), "every code, and only those"
    for name, (code, family) in listed.items():
        cls = getattr(warren, name)
        assert cls is errors.BY_CODE[code] and cls.code == code, name
        if family in FAMILIES:
            assert issubclass(cls, getattr(warren, family)), f"{name} is not a {family}"
        else:
            assert not any(issubclass(cls, getattr(errors, f)) for f in FAMILIES), f"{name} has a family"


def test_the_errors_section_names_every_exception_class_the_package_defines():
    text = section(doc_text(), "Errors")
    defined = {
        name for name, obj in vars(errors).items()
        if inspect.isclass(obj) and issubclass(obj, errors.WarrenError)
    }
    named = set(re.findall(r"`(?:warren\.)?(\w+)`", text))
    assert defined - named == set(), "classes the page does not mention"
    for name in defined:
        assert getattr(warren, name) is getattr(errors, name), f"warren.{name} is not exported"
        assert name in warren.__all__


def test_every_name_the_page_writes_as_warren_dot_something_exists():
    names = set(re.findall(r"\bwarren\.([A-Za-z_][A-Za-z_0-9]*(?:\.[A-Za-z_][A-Za-z_0-9]*)?)", doc_text()))
    names -= {"md"}  # file names like docs/python.md do not start with warren.
    assert {"Client", "Handle", "Spawned", "SPAWN", "aio.AsyncClient"} <= names
    import warren.aio  # noqa: F401  (the page names warren.aio.AsyncClient)

    for dotted in sorted(names):
        obj = warren
        for part in dotted.split("."):
            assert hasattr(obj, part), f"the page names warren.{dotted}"
            obj = getattr(obj, part)
    # And the bare names it gives the results and rights.
    for name in ("Delivery", "Batch", "Run", "Identity", "Spawned", "SEND", "GRANT", "MONITOR", "RECEIVE", "SPAWN", "STOP"):
        assert name in warren.__all__, name
