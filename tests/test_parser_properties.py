"""Property tests (issue 8 §5): the FTP LIST parser and landing keys."""

from __future__ import annotations

import os
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from module_system.landing.keys import MAX_KEY_BYTES, LandingLayout, safe_relative_key
from module_system.sources.ftp_listing import EntryKind, parse_list_line

pytestmark = pytest.mark.fuzz
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "150"))
SETTINGS = settings(max_examples=EXAMPLES, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])  # fmt: skip
NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
# Names a server can list on one line: no line breaks, no leading or trailing blanks.
NAMES = (
    st.text(st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")), min_size=1, max_size=40)
    .map(str.strip)
    .filter(lambda n: n not in ("", ".", "..") and "->" not in n)
)
MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]


@SETTINGS
@given(st.text(max_size=200))
def test_any_line_parses_or_is_skipped_never_raises(line: str) -> None:
    entry = parse_list_line(line, NOW)
    assert entry is None or entry.name


@SETTINGS
@given(NAMES, st.integers(0, 10**15), st.integers(0, 11), st.integers(1, 28),
       st.integers(2000, 2025), st.booleans())  # fmt: skip
def test_unix_lines_give_back_name_and_size(
    name: str, size: int, month: int, day: int, year: int, with_group: bool
) -> None:
    owner = "ftp ftp" if with_group else "ftp"
    line = f"-rw-r--r--    1 {owner} {size:>12} {MONTHS[month]} {day:2d}  {year} {name}"
    entry = parse_list_line(line, NOW)
    assert entry is not None and entry.kind is EntryKind.FILE
    assert (entry.name, entry.size) == (name, size)


@SETTINGS
@given(NAMES, st.integers(0, 10**12), st.booleans())
def test_dos_lines_give_back_name_size_and_kind(name: str, size: int, folder: bool) -> None:
    middle = "<DIR>         " if folder else f"{size:>14}"
    entry = parse_list_line(f"11-30-26  10:15AM {middle} {name}", NOW)
    assert entry is not None and entry.name == name
    assert entry.kind is (EntryKind.DIR if folder else EntryKind.FILE)
    assert folder or entry.size == size


REMOTE_KEYS = st.lists(st.text(max_size=30), min_size=1, max_size=6).map("/".join)


@SETTINGS
@given(REMOTE_KEYS, REMOTE_KEYS)
def test_landing_keys_are_one_to_one(a: str, b: str) -> None:
    if a != b:
        assert safe_relative_key(a) != safe_relative_key(b)


@SETTINGS
@given(REMOTE_KEYS | st.text(min_size=900, max_size=1500))
def test_landing_keys_never_leave_the_service_folder(remote: str) -> None:
    layout = LandingLayout("p/", "ftp", "svc", "validated")
    for key in (layout.valid_key(remote), layout.quarantine_key(remote)):
        assert key.startswith("p/data/ftp/svc/")
        assert len(key.encode()) <= MAX_KEY_BYTES
        assert not {"", ".", ".."} & set(key[len("p/data/ftp/svc/") :].split("/")[1:])
