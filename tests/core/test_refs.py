"""Names, version strings, references and online table names (DESIGN §3, §6)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from feature_rollout.core.errors import InvalidNameError, InvalidReferenceError, InvalidVersionError
from feature_rollout.core.refs import (
    MAX_IDENTIFIER_LENGTH,
    NAME_PATTERN,
    FeatureRef,
    ViewRef,
    format_version,
    online_table_name,
    parse_feature_ref,
    parse_version,
    parse_view_ref,
    validate_name,
)

names = st.from_regex(NAME_PATTERN, fullmatch=True)
versions = st.none() | st.integers(min_value=0, max_value=10**6)

# --- validate_name ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["a", "driver_stats", "Driver2", "x_1_y", "a" * 63, "A" + "_" * 62])
def test_valid_names_are_returned_unchanged(name):
    assert validate_name(name, "feature view") == name


def test_64_characters_is_one_too_many():
    with pytest.raises(InvalidNameError, match=r"^The feature view name 'a{64}' is not allowed: .* at most 63 "):
        validate_name("a" * 64, "feature view")


@pytest.mark.parametrize("name", ["1driver", "_driver", "", "driver-stats", "driver stats", "dr\u00efver", "driver\n",
                                  "a.b"])
def test_names_breaking_the_pattern_are_rejected_with_the_rule(name):
    with pytest.raises(InvalidNameError) as err:
        validate_name(name, "entity")
    assert str(err.value) == (
        f"The entity name {name!r} is not allowed: names start with a letter, contain only letters, digits and '_', "
        "and are at most 63 characters long (pattern ^[A-Za-z][A-Za-z0-9_]{0,62}$)."
    )


@pytest.mark.parametrize(("name", "char"), [("driver@v2", "@"), ("driver:x", ":"), ("@", "@"), ("a:b@c", "@")])
def test_reserved_characters_say_they_are_reserved_for_references(name, char):
    with pytest.raises(InvalidNameError) as err:
        validate_name(name, "feature view")
    assert str(err.value) == (
        f"The feature view name {name!r} contains '{char}', which is reserved for references such as "
        "'driver_stats@v2:trips_today'. Rename it without '@' and ':'."
    )


@pytest.mark.parametrize(("value", "shown"), [(None, "NoneType None"), (3, "int 3"), (b"fv", "bytes b'fv'")])
def test_a_name_must_be_a_string(value, shown):
    with pytest.raises(InvalidNameError, match=f"^The field name must be a string, got {re.escape(shown)}.$"):
        validate_name(value, "field")


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=70))
def test_validate_name_accepts_exactly_the_documented_pattern(text):
    if re.fullmatch(r"[A-Za-z][A-Za-z0-9_]{0,62}", text, flags=re.ASCII):
        assert validate_name(text, "x") == text
    else:
        with pytest.raises(InvalidNameError):
            validate_name(text, "x")


# --- parse_version ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "number"),
    [("latest", None), ("LATEST", None), ("Latest", None), ("v0", 0), ("v2", 2), ("V2", 2), ("version2", 2),
     ("Version10", 10), ("VERSION7", 7), ("v123", 123)],
)
def test_parse_version(text, number):
    assert parse_version(text) == number


@pytest.mark.parametrize("text", ["v-1", "v", "2", "latest ", " v1", "v1 ", "v1.0", "", "vv1", "ver1", "v1a", "latest1",
                                  "v\u0662"])
def test_bad_version_strings(text):
    with pytest.raises(InvalidVersionError) as err:
        parse_version(text)
    assert str(err.value) == (
        f"{text!r} is not a valid version: use 'latest', or 'vN' / 'versionN' with a whole number N >= 0 "
        "(for example 'v2')."
    )


@pytest.mark.parametrize("value", [None, 2, 2.0, True, ["v1"]])
def test_a_version_must_be_a_string(value):
    with pytest.raises(InvalidVersionError, match=f"^{re.escape(repr(value))} is not a valid version of fv"):
        parse_version(value, what="version of fv")


@settings(max_examples=100, deadline=None)
@given(versions)
def test_format_version_round_trips(number):
    assert parse_version(format_version(number)) == number


def test_format_version():
    assert (format_version(None), format_version(0), format_version(12)) == ("latest", "v0", "v12")


# --- feature and view references -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "ref"),
    [("fv:feat", FeatureRef("fv", "feat")),
     ("fv@v2:feat", FeatureRef("fv", "feat", 2)),
     ("fv@V2:feat", FeatureRef("fv", "feat", 2)),
     ("fv@version0:feat", FeatureRef("fv", "feat", 0)),
     ("fv@latest:feat", FeatureRef("fv", "feat", None))],
)
def test_parse_feature_ref(text, ref):
    assert parse_feature_ref(text) == ref


def test_feature_ref_str():
    assert str(FeatureRef("fv", "feat")) == "fv:feat"
    assert str(FeatureRef("fv", "feat", 0)) == "fv@v0:feat"
    assert str(parse_feature_ref("fv@latest:feat")) == "fv:feat"


@pytest.mark.parametrize("text", ["fv", "fv:a:b", "", "a:b:", None, 3])
def test_feature_refs_without_exactly_one_colon(text):
    with pytest.raises(InvalidReferenceError) as err:
        parse_feature_ref(text)
    assert str(err.value) == (
        f"{text!r} is not a feature reference: write 'view:feature', 'view@vN:feature' or 'view@latest:feature'."
    )


def test_feature_ref_with_two_ats():
    with pytest.raises(InvalidReferenceError, match=r"^'fv@@v1:x' has more than one '@'; write 'view@vN'.$"):
        parse_feature_ref("fv@@v1:x")


def test_feature_ref_with_a_bad_version_names_the_whole_reference():
    with pytest.raises(InvalidVersionError, match=r"^'x' is not a valid version in 'fv@x:y'"):
        parse_feature_ref("fv@x:y")


@pytest.mark.parametrize(("text", "what"), [("@v1:x", "feature view"), ("fv@v1:", "feature"), ("1fv:x", "feature view"),
                                            ("fv:1x", "feature")])
def test_feature_ref_parts_must_be_valid_names(text, what):
    with pytest.raises(InvalidNameError, match=f"^The {what} name '[^']*' is not allowed"):
        parse_feature_ref(text)


@settings(max_examples=200, deadline=None)
@given(names, names, versions)
def test_feature_refs_round_trip(view, feature, version):
    ref = FeatureRef(view=view, feature=feature, version=version)
    assert parse_feature_ref(str(ref)) == ref
    assert str(parse_feature_ref(str(ref))) == str(ref)


@pytest.mark.parametrize(
    ("text", "ref"),
    [("fv", ViewRef("fv")), ("fv@v1", ViewRef("fv", 1)), ("fv@latest", ViewRef("fv")),
     ("prod/fv", ViewRef("fv", None, "prod")), ("prod/fv@v2", ViewRef("fv", 2, "prod"))],
)
def test_parse_view_ref(text, ref):
    assert parse_view_ref(text) == ref


@pytest.mark.parametrize("text", ["a/b/c", "fv:x", "prod/fv@v1:x", None])
def test_bad_view_refs(text):
    with pytest.raises(InvalidReferenceError) as err:
        parse_view_ref(text)
    assert str(err.value) == (
        f"{text!r} is not a feature view reference: write 'view', 'view@vN', 'workspace/view' or 'workspace/view@vN'."
    )


@pytest.mark.parametrize(("text", "what"), [("/fv", "workspace"), ("prod/", "feature view"), ("p-1/fv", "workspace")])
def test_view_ref_parts_must_be_valid_names(text, what):
    with pytest.raises(InvalidNameError, match=f"^The {what} name"):
        parse_view_ref(text)


def test_view_ref_with_a_bad_version():
    with pytest.raises(InvalidVersionError, match=r"^'v-1' is not a valid version in 'prod/fv@v-1'"):
        parse_view_ref("prod/fv@v-1")


@settings(max_examples=200, deadline=None)
@given(names, versions, st.none() | names)
def test_view_refs_round_trip(view, version, workspace):
    ref = ViewRef(view=view, version=version, workspace=workspace)
    assert parse_view_ref(str(ref)) == ref


# --- online table names ---------------------------------------------------------------------------


def test_online_table_names_follow_feast():
    assert online_table_name("demo", "driver_stats", 0) == "demo_driver_stats"
    assert online_table_name("demo", "driver_stats", 1) == "demo_driver_stats_v1"
    assert online_table_name("demo", "driver_stats", 12) == "demo_driver_stats_v12"


def test_a_name_of_exactly_63_characters_is_kept():
    view = "v" * (MAX_IDENTIFIER_LENGTH - len("ws_"))
    assert online_table_name("ws", view, 0) == f"ws_{view}"
    assert len(online_table_name("ws", view, 0)) == 63


def test_long_names_are_shortened_to_63_with_a_hash_suffix():
    workspace, view = "w" * 30, "v" * 40
    name = online_table_name(workspace, view, 3)
    assert len(name) == MAX_IDENTIFIER_LENGTH
    assert re.fullmatch(r"w{30}_v{19}_[0-9a-f]{12}", name), name
    assert name == online_table_name(workspace, view, 3)


def test_distinct_long_names_stay_distinct():
    # All of these share the first 50 characters, which is all the readable prefix keeps.
    tables = {online_table_name("w" * 30, "v" * 40, n) for n in range(20)}
    tables |= {online_table_name("w" * 30, "v" * 40 + "x", 0), online_table_name("w" * 30, "v" * 41, 0)}
    assert len(tables) == 22
    assert {len(t) for t in tables} == {63}
    assert len({t[:50] for t in tables}) == 1


@settings(max_examples=200, deadline=None)
@given(names, names, st.integers(min_value=0, max_value=10**4))
def test_online_table_names_are_valid_identifiers(workspace, view, version):
    name = online_table_name(workspace, view, version)
    assert len(name) <= MAX_IDENTIFIER_LENGTH
    assert validate_name(name, "table") == name
    plain = f"{workspace}_{view}" if version == 0 else f"{workspace}_{view}_v{version}"
    if len(plain) <= MAX_IDENTIFIER_LENGTH:
        assert name == plain
    else:
        assert name.startswith(plain[:50])


def test_feast_table_names_can_meet():
    # Kept as Feast names them (DESIGN §6); plans and applies refuse a collision (tests/core/test_plan.py).
    assert online_table_name("demo", "driver_stats_v1", 0) == online_table_name("demo", "driver_stats", 1)


def test_version_prefix_is_ascii_only():
    with pytest.raises(InvalidVersionError, match="is not a valid version"):
        parse_version("ver\u017fion2")


def test_a_huge_version_number_is_an_invalid_version_error():
    with pytest.raises(InvalidVersionError, match="is not a valid version"):
        parse_version("v" + "1" * 5000)
    assert parse_version("v999999999") == 999_999_999
