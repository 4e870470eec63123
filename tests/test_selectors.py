# -*- test-case-name: tests.test_selectors -*-
"""
Tests for L{wardled.selectors}: syntax, matching and the exact error texts
of k8s.io/apimachinery's label and field selector parsers.
"""

from __future__ import annotations

from typing import ClassVar

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from wardled.selectors import (
    FieldSelector,
    FieldTerm,
    LabelSelector,
    Operator,
    Requirement,
    SelectorError,
    escape_field_value,
    make_requirement,
    parse_field_selector,
    parse_label_selector,
    unescape_field_value,
)

LABEL_VALUE_MSG = (
    "a valid label must be an empty string or consist of alphanumeric characters, "
    "'-', '_' or '.', and must start and end with an alphanumeric character (e.g. "
    "'MyValue',  or 'my_value',  or '12345', regex used for validation is "
    "'(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
)
NAME_PART_MSG = (
    "name part must consist of alphanumeric characters, '-', '_' or '.', and must "
    "start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  "
    "or '123-abc', regex used for validation is "
    "'([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
)
SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric "
    "characters, '-' or '.', and must start and end with an alphanumeric character "
    "(e.g. 'example.com', regex used for validation is "
    "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)
OPERATORS = "in, notin, =, ==, !=, gt, lt"


class LabelSelectorSyntaxTests(SynchronousTestCase):
    """
    Tests for what L{parse_label_selector} accepts, via its canonical form.
    """

    def assertCanonical(self, text: str, canonical: str) -> None:
        self.assertEqual(str(parse_label_selector(text)), canonical, repr(text))

    def test_empty(self) -> None:
        selector = parse_label_selector("")
        self.assertEqual(selector, LabelSelector())
        self.assertTrue(selector.is_empty())
        self.assertEqual(str(selector), "")

    def test_only_whitespace(self) -> None:
        self.assertTrue(parse_label_selector(" \t\r\n").is_empty())

    def test_upstream_good_strings(self) -> None:
        """
        The good strings of Go's C{TestSelectorParse} print back without
        their spaces.
        """
        for text in [
            "x=a,y=b,z=c",
            "",
            "x!=a,y=b",
            "x=",
            "x= ",
            "x=,z= ",
            "x= ,z= ",
            "!x",
            "x>1",
            "x>1,z<5",
        ]:
            self.assertCanonical(text, text.replace(" ", ""))

    def test_operators(self) -> None:
        for text in ["a=b", "a==b", "a!=b", "a", "!a", "a>10", "a<5"]:
            self.assertCanonical(text, text)

    def test_operator_recorded(self) -> None:
        self.assertEqual(
            parse_label_selector("a==b").requirements,
            (Requirement("a", Operator.DOUBLE_EQUALS, ("b",)),),
        )
        self.assertEqual(
            parse_label_selector("!a").requirements,
            (Requirement("a", Operator.DOES_NOT_EXIST),),
        )
        self.assertEqual(
            parse_label_selector("a").requirements, (Requirement("a", Operator.EXISTS),)
        )
        self.assertEqual(
            parse_label_selector("a>5").requirements,
            (Requirement("a", Operator.GREATER_THAN, ("5",)),),
        )

    def test_set_values_sorted_and_deduplicated(self) -> None:
        self.assertCanonical("a in (z,b,z)", "a in (b,z)")
        self.assertEqual(
            parse_label_selector("a notin (z,b)").requirements,
            (Requirement("a", Operator.NOT_IN, ("b", "z")),),
        )

    def test_empty_set_values(self) -> None:
        """
        Empty values around commas and in C{()} are the empty string.
        """
        self.assertCanonical(
            "x in (foo,,baz),y,z notin ()", "x in (,baz,foo),y,z notin ()"
        )
        self.assertCanonical("a in (,b)", "a in (,b)")
        self.assertCanonical("a in (b,)", "a in (,b)")
        self.assertCanonical("a in (,)", "a in ()")
        self.assertEqual(
            parse_label_selector("a in ()").requirements,
            (Requirement("a", Operator.IN, ("",)),),
        )

    def test_requirements_sorted_by_key(self) -> None:
        self.assertCanonical("x=a,a=x", "a=x,x=a")
        self.assertEqual(
            str(parse_label_selector("x=a,a=x")), str(parse_label_selector("a=x,x=a"))
        )

    def test_same_key_keeps_order(self) -> None:
        self.assertCanonical("b,a!=2,a=1", "a!=2,a=1,b")

    def test_whitespace(self) -> None:
        self.assertCanonical("  a  =  b  ,\tc\nin\r( d , e )  ", "a=b,c in (d,e)")

    def test_keywords_as_identifiers(self) -> None:
        self.assertCanonical("in in (in,notin)", "in in (in,notin)")
        self.assertCanonical("notin=in", "notin=in")
        self.assertCanonical("in", "in")
        self.assertCanonical("!notin", "!notin")

    def test_prefixed_keys(self) -> None:
        self.assertCanonical("example.com/key=v", "example.com/key=v")
        self.assertCanonical("k8s.io/a in (x)", "k8s.io/a in (x)")

    def test_uppercase_and_limits(self) -> None:
        key = "K" * 63
        value = "V" * 63
        self.assertCanonical(f"{key}={value}", f"{key}={value}")
        self.assertCanonical("a" * 253 + "/b=c", "a" * 253 + "/b=c")

    def test_nul_ends_the_input(self) -> None:
        """
        Go's lexer takes a NUL byte for the end of the input.
        """
        self.assertCanonical("a \x00 junk ((", "a")
        self.assertCanonical("\x00a=b", "")


class LabelSelectorErrorTests(SynchronousTestCase):
    """
    Tests for the messages of L{parse_label_selector}.
    """

    def assertError(self, text: str, message: str) -> None:
        error = self.assertRaises(SelectorError, parse_label_selector, text)
        self.assertEqual(error.message, message, repr(text))
        self.assertEqual(str(error), message)

    def test_missing_operator(self) -> None:
        self.assertError(
            "a b", f"unable to parse requirement: found 'b', expected: {OPERATORS}"
        )
        self.assertError(
            "a (", f"unable to parse requirement: found '(', expected: {OPERATORS}"
        )
        self.assertError(
            "a !", f"unable to parse requirement: found '!', expected: {OPERATORS}"
        )

    def test_after_requirement(self) -> None:
        self.assertError("a=b c", "found 'c', expected: ',' or 'end of string'")
        self.assertError("a=b)", "found ')', expected: ',' or 'end of string'")
        self.assertError("a in ()x", "found 'x', expected: ',' or 'end of string'")
        self.assertError("!a=b", "found '=', expected: ',' or 'end of string'")

    def test_upstream_bad_strings(self) -> None:
        self.assertError(
            "x=a||y=b", "unable to parse requirement: " + _value_error("x", "a||y")
        )
        self.assertError("x==a==b", "found '==', expected: ',' or 'end of string'")
        self.assertError(
            "x<a",
            'unable to parse requirement: values[0]: Invalid value: "a": '
            "for 'Gt', 'Lt' operators, the value must be an integer",
        )

    def test_trailing_comma(self) -> None:
        self.assertError("a,", "found '', expected: identifier after ','")
        self.assertError("a,,b", "found ',', expected: identifier after ','")
        self.assertError("a,=", "found '=', expected: identifier after ','")

    def test_bad_start(self) -> None:
        self.assertError(",a", "found ',', expected: !, identifier, or 'end of string'")
        self.assertError("(", "found '(', expected: !, identifier, or 'end of string'")
        self.assertError(
            "!=a", "found '!=', expected: !, identifier, or 'end of string'"
        )
        self.assertError("=", "found '=', expected: !, identifier, or 'end of string'")

    def test_not_an_identifier(self) -> None:
        self.assertError(
            "!!a", "unable to parse requirement: found '!', expected: identifier"
        )
        self.assertError(
            "!", "unable to parse requirement: found '', expected: identifier"
        )
        self.assertError(
            "a=(", "unable to parse requirement: found '(', expected: identifier"
        )
        self.assertError(
            "a==!", "unable to parse requirement: found '!', expected: identifier"
        )

    def test_set_syntax(self) -> None:
        self.assertError(
            "a in x", "unable to parse requirement: found 'x' expected: '('"
        )
        self.assertError(
            "a notin", "unable to parse requirement: found '' expected: '('"
        )
        self.assertError(
            "a in (x y)", "unable to parse requirement: found 'y', expected: ',' or ')'"
        )
        self.assertError(
            "a in (x", "unable to parse requirement: found '', expected: ',' or ')'"
        )
        self.assertError(
            "a in (,",
            "unable to parse requirement: found '', expected: ',', or identifier",
        )
        self.assertError(
            "a in (=)",
            "unable to parse requirement: found '=', expected: ',', ')' or identifier",
        )
        self.assertError(
            "a in (",
            "unable to parse requirement: found '', expected: ',', ')' or identifier",
        )

    def test_bad_key(self) -> None:
        """
        Keys are checked while parsing with a nil field path.
        """
        self.assertError(
            "Bad!Key",
            f"unable to parse requirement: found '!', expected: {OPERATORS}",
        )
        self.assertError(
            "-a=b",
            f'unable to parse requirement: <nil>: Invalid value: "-a": {NAME_PART_MSG}',
        )
        self.assertError(
            "a" * 64,
            f'unable to parse requirement: <nil>: Invalid value: "{"a" * 64}": '
            "name part must be no more than 63 bytes",
        )

    def test_bad_key_messages_joined(self) -> None:
        self.assertError(
            "Example.com/",
            'unable to parse requirement: <nil>: Invalid value: "Example.com/": '
            f"prefix part {SUBDOMAIN_MSG}; name part must be non-empty; {NAME_PART_MSG}",
        )

    def test_bad_key_quoted_like_go(self) -> None:
        self.assertError(
            "é\x01",
            f'unable to parse requirement: <nil>: Invalid value: "é\\x01": {NAME_PART_MSG}',
        )

    def test_bad_value(self) -> None:
        self.assertError(
            "a=-b", "unable to parse requirement: " + _value_error("a", "-b")
        )
        self.assertError(
            "a=b/c", "unable to parse requirement: " + _value_error("a", "b/c")
        )
        self.assertError(
            "a=" + "v" * 64,
            f'unable to parse requirement: values[0][a]: Invalid value: "{"v" * 64}": '
            "must be no more than 63 bytes",
        )

    def test_bad_values_aggregated(self) -> None:
        """
        Several bad values are listed in brackets, in sorted value order.
        """
        self.assertError(
            "a in (-z,ok,-b)",
            "unable to parse requirement: ["
            + _value_error("a", "-b")
            + ", "
            + _value_error("a", "-z", index=1)
            + "]",
        )

    def test_order_operators(self) -> None:
        self.assertError(
            "a>",
            'unable to parse requirement: values[0]: Invalid value: "": '
            "for 'Gt', 'Lt' operators, the value must be an integer",
        )
        self.assertError(
            "a>99999999999999999999",
            'unable to parse requirement: values[0]: Invalid value: "99999999999999999999": '
            "for 'Gt', 'Lt' operators, the value must be an integer",
        )
        self.assertError(
            "a<1_0",
            'unable to parse requirement: values[0]: Invalid value: "1_0": '
            "for 'Gt', 'Lt' operators, the value must be an integer",
        )

    def test_negative_bound_is_not_a_label_value(self) -> None:
        self.assertError(
            "a>-1", "unable to parse requirement: " + _value_error("a", "-1")
        )

    def test_integer_and_value_errors(self) -> None:
        self.assertError(
            "a<.",
            "unable to parse requirement: ["
            'values[0]: Invalid value: ".": '
            "for 'Gt', 'Lt' operators, the value must be an integer, "
            + _value_error("a", ".")
            + "]",
        )


def _value_error(key: str, value: str, index: int = 0) -> str:
    return f'values[{index}][{key}]: Invalid value: "{value}": {LABEL_VALUE_MSG}'


class LabelSelectorMatchTests(SynchronousTestCase):
    """
    Tests for L{LabelSelector.matches}.
    """

    def assertMatch(self, text: str, labels: dict[str, str]) -> None:
        self.assertTrue(parse_label_selector(text).matches(labels), (text, labels))

    def assertNoMatch(self, text: str, labels: dict[str, str]) -> None:
        self.assertFalse(parse_label_selector(text).matches(labels), (text, labels))

    def test_upstream_matches(self) -> None:
        self.assertMatch("", {"x": "y"})
        self.assertMatch("", {})
        self.assertMatch("x=y", {"x": "y"})
        self.assertMatch("x=y,z=w", {"x": "y", "z": "w"})
        self.assertMatch("x!=y,z!=w", {"x": "z", "z": "a"})
        self.assertMatch("notin=in", {"notin": "in"})
        self.assertMatch("x", {"x": "z"})
        self.assertMatch("!x", {"y": "z"})
        self.assertMatch("x>1", {"x": "2"})
        self.assertMatch("x<1", {"x": "0"})
        self.assertNoMatch("x=z", {})
        self.assertNoMatch("x=y", {"x": "z"})
        self.assertNoMatch("x=y,z=w", {"x": "w", "z": "w"})
        self.assertNoMatch("x!=y,z!=w", {"x": "z", "z": "w"})
        self.assertNoMatch("x", {"y": "z"})
        self.assertNoMatch("!x", {"x": "z"})
        self.assertNoMatch("x>1", {"x": "0"})
        self.assertNoMatch("x<1", {"x": "2"})

    def test_set_operators(self) -> None:
        self.assertMatch("x in (a,b)", {"x": "b"})
        self.assertNoMatch("x in (a,b)", {"x": "c"})
        self.assertNoMatch("x in (a,b)", {})
        self.assertMatch("x notin (a,b)", {"x": "c"})
        self.assertMatch("x notin (a,b)", {})
        self.assertNoMatch("x notin (a,b)", {"x": "a"})
        self.assertMatch("x in ()", {"x": ""})
        self.assertNoMatch("x in ()", {"x": "a"})

    def test_missing_and_empty(self) -> None:
        self.assertMatch("x!=a", {})
        self.assertNoMatch("x=", {})
        self.assertMatch("x=", {"x": ""})
        self.assertMatch("x", {"x": ""})

    def test_order_operators_need_integers(self) -> None:
        self.assertNoMatch("x>1", {})
        self.assertNoMatch("x>1", {"x": "two"})
        self.assertNoMatch("x>1", {"x": "1.5"})
        self.assertMatch("x<1", {"x": "-3"})
        self.assertMatch("x>1", {"x": "+2"})
        self.assertNoMatch("x>1", {"x": "99999999999999999999"})
        self.assertNoMatch("x>1", {"x": " 2"})

    def test_requires_exact_match(self) -> None:
        self.assertEqual(parse_label_selector("a=b,c").requires_exact_match("a"), "b")
        self.assertEqual(parse_label_selector("a==b").requires_exact_match("a"), "b")
        self.assertEqual(
            parse_label_selector("a in (b)").requires_exact_match("a"), "b"
        )
        self.assertIsNone(parse_label_selector("a in (b,c)").requires_exact_match("a"))
        self.assertIsNone(parse_label_selector("a!=b").requires_exact_match("a"))
        self.assertIsNone(parse_label_selector("a!=b,a=c").requires_exact_match("a"))
        self.assertIsNone(parse_label_selector("c=d").requires_exact_match("a"))

    def test_from_set(self) -> None:
        selector = LabelSelector.from_set({"z": "1", "a": "2"})
        self.assertEqual(str(selector), "a=2,z=1")
        self.assertTrue(selector.matches({"a": "2", "z": "1", "q": "x"}))
        self.assertFalse(selector.matches({"a": "2"}))
        self.assertTrue(LabelSelector.from_set({}).is_empty())

    def test_frozen(self) -> None:
        selector = parse_label_selector("a")
        self.assertRaises(AttributeError, setattr, selector, "requirements", ())
        self.assertEqual(hash(selector), hash(parse_label_selector("a")))


class MakeRequirementTests(SynchronousTestCase):
    """
    Tests for L{make_requirement}, Go's C{NewRequirement}.
    """

    def assertError(self, message: str, *args: object) -> None:
        error = self.assertRaises(SelectorError, make_requirement, *args)
        self.assertEqual(error.message, message)

    def test_valid(self) -> None:
        self.assertEqual(
            make_requirement("a", Operator.IN, ["x", "y"]),
            Requirement("a", Operator.IN, ("x", "y")),
        )

    def test_bad_key(self) -> None:
        self.assertError(
            f'key: Invalid value: "-": {NAME_PART_MSG}', "-", Operator.EXISTS
        )

    def test_value_counts(self) -> None:
        self.assertError(
            "values: Invalid value: []: for 'in', 'notin' operators, values set can't be empty",
            "a",
            Operator.NOT_IN,
            [],
        )
        self.assertError(
            'values: Invalid value: ["x","y"]: exact-match compatibility requires one single value',
            "a",
            Operator.EQUALS,
            ["x", "y"],
        )
        self.assertError(
            'values: Invalid value: ["x"]: values set must be empty for exists and does not exist',
            "a",
            Operator.DOES_NOT_EXIST,
            ["x"],
        )
        self.assertError(
            "values: Invalid value: []: for 'Gt', 'Lt' operators, exactly one value is required",
            "a",
            Operator.LESS_THAN,
            [],
        )

    def test_everything_wrong(self) -> None:
        self.assertError(
            f'[key: Invalid value: "-": {NAME_PART_MSG}, '
            'values: Invalid value: ["1","-"]: '
            "for 'Gt', 'Lt' operators, exactly one value is required, "
            "values[1]: Invalid value: \"-\": for 'Gt', 'Lt' operators, the value must be an integer, "
            f'values[1][-]: Invalid value: "-": {LABEL_VALUE_MSG}]',
            "-",
            Operator.GREATER_THAN,
            ["1", "-"],
        )

    def test_canonical_string_sorts_values(self) -> None:
        self.assertEqual(
            str(Requirement("a", Operator.NOT_IN, ("z", "b"))), "a notin (b,z)"
        )
        self.assertEqual(str(Requirement("a", Operator.IN, ())), "a in ()")


class FieldSelectorParseTests(SynchronousTestCase):
    """
    Tests for L{parse_field_selector}.
    """

    def test_empty(self) -> None:
        selector = parse_field_selector("")
        self.assertEqual(selector, FieldSelector())
        self.assertTrue(selector.is_empty())
        self.assertEqual(str(selector), "")
        self.assertTrue(selector.matches({}))

    def test_operators(self) -> None:
        self.assertEqual(
            parse_field_selector("metadata.name=a").terms,
            (FieldTerm("metadata.name", "a"),),
        )
        self.assertEqual(
            parse_field_selector("metadata.name==a").terms,
            (FieldTerm("metadata.name", "a"),),
        )
        self.assertEqual(
            parse_field_selector("metadata.name!=a").terms,
            (FieldTerm("metadata.name", "a", negated=True),),
        )

    def test_canonical_string(self) -> None:
        selector = parse_field_selector("metadata.namespace!=b,metadata.name==a")
        self.assertEqual(str(selector), "metadata.name=a,metadata.namespace!=b")

    def test_empty_terms_skipped(self) -> None:
        self.assertEqual(
            str(parse_field_selector(",metadata.name=a,,")), "metadata.name=a"
        )

    def test_empty_field_and_value_dropped(self) -> None:
        """
        Go's transform drops terms with neither field nor value.
        """
        self.assertTrue(parse_field_selector("=").is_empty())
        self.assertTrue(parse_field_selector("==,!=").is_empty())
        self.assertEqual(
            str(parse_field_selector("=,metadata.name=a")), "metadata.name=a"
        )

    def test_empty_value(self) -> None:
        selector = parse_field_selector("metadata.namespace=")
        self.assertEqual(selector.terms, (FieldTerm("metadata.namespace", ""),))
        self.assertEqual(selector.required_value("metadata.namespace"), "")

    def test_first_operator_splits(self) -> None:
        self.assertEqual(
            parse_field_selector("metadata.name==\\=a").terms,
            (FieldTerm("metadata.name", "=a"),),
        )
        self.assertEqual(
            parse_field_selector("metadata.name=!a").terms,
            (FieldTerm("metadata.name", "!a"),),
        )

    def test_escapes(self) -> None:
        selector = parse_field_selector(
            "metadata.name=a\\,b\\=c\\\\d,metadata.namespace=x"
        )
        self.assertEqual(
            selector.terms,
            (
                FieldTerm("metadata.name", "a,b=c\\d"),
                FieldTerm("metadata.namespace", "x"),
            ),
        )
        self.assertEqual(
            str(selector), "metadata.name=a\\,b\\=c\\\\d,metadata.namespace=x"
        )

    def test_unicode_values(self) -> None:
        self.assertEqual(
            parse_field_selector("metadata.name=함수").required_value("metadata.name"),
            "함수",
        )

    def test_no_whitespace_trimming(self) -> None:
        error = self.assertRaises(
            SelectorError, parse_field_selector, "metadata.name = a"
        )
        self.assertEqual(
            error.message,
            '"metadata.name " is not a known field selector: only "metadata.name", '
            '"metadata.namespace"',
        )

    def test_custom_fields(self) -> None:
        selector = parse_field_selector("spec.x=1", allowed=("spec.x",))
        self.assertTrue(selector.matches({"spec.x": "1"}))
        error = self.assertRaises(
            SelectorError, parse_field_selector, "a=1", ("b", "c", "d")
        )
        self.assertEqual(
            error.message, '"a" is not a known field selector: only "b", "c", "d"'
        )


class FieldSelectorErrorTests(SynchronousTestCase):
    """
    Tests for the messages of L{parse_field_selector}.
    """

    def assertError(self, text: str, message: str) -> None:
        error = self.assertRaises(SelectorError, parse_field_selector, text)
        self.assertEqual(error.message, message, repr(text))

    def test_unknown_field(self) -> None:
        self.assertError(
            "spec.x=1",
            '"spec.x" is not a known field selector: only "metadata.name", "metadata.namespace"',
        )
        self.assertError(
            "=x",
            '"" is not a known field selector: only "metadata.name", "metadata.namespace"',
        )
        self.assertError(
            "metadata.name=a,zz!=b",
            '"zz" is not a known field selector: only "metadata.name", "metadata.namespace"',
        )

    def test_unknown_field_quoted_like_go(self) -> None:
        self.assertError(
            'a"\t=1',
            '"a\\"\\t" is not a known field selector: only "metadata.name", "metadata.namespace"',
        )

    def test_no_operator(self) -> None:
        self.assertError(
            "metadata.name=a,b",
            "invalid selector: 'metadata.name=a,b'; can't understand 'b'",
        )
        self.assertError("a!b", "invalid selector: 'a!b'; can't understand 'a!b'")

    def test_syntax_before_fields(self) -> None:
        """
        Every term is parsed before any field is checked.
        """
        self.assertError(
            "spec.x=1,zzz", "invalid selector: 'spec.x=1,zzz'; can't understand 'zzz'"
        )

    def test_first_error_in_sorted_order(self) -> None:
        self.assertError(
            "metadata.name=b=,b,a",
            "invalid selector: 'metadata.name=b=,b,a'; can't understand 'a'",
        )
        self.assertError(
            "z=1,a=1",
            '"a" is not a known field selector: '
            'only "metadata.name", "metadata.namespace"',
        )

    def test_unescaped(self) -> None:
        self.assertError(
            "metadata.name=a=b",
            "invalid field selector: unescaped character in value: 61",
        )
        self.assertError(
            "metadata.name==a==",
            "invalid field selector: unescaped character in value: 61",
        )

    def test_invalid_escapes(self) -> None:
        self.assertError(
            "metadata.name=a\\b", "invalid field selector: invalid escape sequence: \\b"
        )
        self.assertError(
            "metadata.name=a\\", "invalid field selector: invalid escape sequence: \\"
        )
        self.assertError(
            "metadata.name=\\\\\\",
            "invalid field selector: invalid escape sequence: \\",
        )
        self.assertError(
            "metadata.name=\\함",
            "invalid field selector: invalid escape sequence: \\함",
        )


class FieldSelectorMatchTests(SynchronousTestCase):
    """
    Tests for L{FieldSelector.matches} and L{FieldSelector.required_value}.
    """

    fields: ClassVar[dict[str, str]] = {
        "metadata.name": "a",
        "metadata.namespace": "ns",
    }

    def test_matches(self) -> None:
        self.assertTrue(parse_field_selector("metadata.name=a").matches(self.fields))
        self.assertFalse(parse_field_selector("metadata.name=b").matches(self.fields))
        self.assertTrue(parse_field_selector("metadata.name!=b").matches(self.fields))
        self.assertFalse(
            parse_field_selector("metadata.name=a,metadata.namespace!=ns").matches(
                self.fields
            )
        )

    def test_missing_field_is_empty(self) -> None:
        self.assertTrue(parse_field_selector("metadata.namespace=").matches({}))
        self.assertTrue(parse_field_selector("metadata.namespace!=x").matches({}))
        self.assertFalse(parse_field_selector("metadata.namespace=x").matches({}))

    def test_required_value(self) -> None:
        selector = parse_field_selector("metadata.namespace=ns,metadata.name==a")
        self.assertEqual(selector.required_value("metadata.name"), "a")
        self.assertEqual(selector.required_value("metadata.namespace"), "ns")
        self.assertIsNone(selector.required_value("spec.x"))
        self.assertIsNone(
            parse_field_selector("metadata.name!=a").required_value("metadata.name")
        )
        self.assertIsNone(parse_field_selector("").required_value("metadata.name"))

    def test_required_value_skips_negations(self) -> None:
        selector = parse_field_selector("metadata.name!=a,metadata.name=b")
        self.assertEqual(selector.required_value("metadata.name"), "b")


class FieldEscapingTests(SynchronousTestCase):
    """
    Tests for L{escape_field_value} and L{unescape_field_value}, with
    Go's C{TestEscapeValue} cases.
    """

    cases: ClassVar[dict[str, str]] = {
        "": "",
        "a": "a",
        "=": "\\=",
        ",": "\\,",
        "\\": "\\\\",
        "\\=\\,\\": "\\\\\\=\\\\\\,\\\\",
    }

    def test_round_trip(self) -> None:
        for raw, escaped in self.cases.items():
            self.assertEqual(escape_field_value(raw), escaped)
            self.assertEqual(unescape_field_value(escaped), raw)

    def test_invalid(self) -> None:
        for text in ["\\", "\\\\\\", "\\a"]:
            self.assertRaises(SelectorError, unescape_field_value, text)


_LABEL_PIECES = st.sampled_from(
    [
        "a",
        "b",
        "x.y/z",
        "in",
        "notin",
        "Z9",
        "-",
        "_",
        "1",
        "-1",
        "=",
        "==",
        "!",
        "!=",
        "(",
        ")",
        ",",
        ">",
        "<",
        " ",
        "\t",
        "\n",
        "\x00",
        "é",
        "/",
        "%",
    ]
)
_LABEL_TEXT = st.one_of(st.text(), st.lists(_LABEL_PIECES).map("".join))

_KEY = st.sampled_from(["a", "b", "in", "notin", "example.com/k", "K_9.x"])
_VALUE = st.sampled_from(["", "v", "in", "notin", "V_1.2-3", "0", "17"])
_REQUIREMENT = st.one_of(
    st.builds(
        lambda key, op: Requirement(key, op),
        _KEY,
        st.sampled_from([Operator.EXISTS, Operator.DOES_NOT_EXIST]),
    ),
    st.builds(
        lambda key, op, value: Requirement(key, op, (value,)),
        _KEY,
        st.sampled_from([Operator.EQUALS, Operator.DOUBLE_EQUALS, Operator.NOT_EQUALS]),
        _VALUE,
    ),
    st.builds(
        lambda key, op, value: Requirement(key, op, (str(value),)),
        _KEY,
        st.sampled_from([Operator.GREATER_THAN, Operator.LESS_THAN]),
        st.integers(min_value=0, max_value=2**63 - 1),
    ),
    st.builds(
        lambda key, op, values: Requirement(key, op, tuple(sorted(values))),
        _KEY,
        st.sampled_from([Operator.IN, Operator.NOT_IN]),
        st.sets(_VALUE, min_size=1),
    ),
)

_FIELDS = ("metadata.name", "metadata.namespace")
_FIELD_TERM = st.builds(FieldTerm, st.sampled_from(_FIELDS), st.text(), st.booleans())
_FIELD_PIECES = st.sampled_from(
    [
        "metadata.name",
        "metadata.namespace",
        "=",
        "==",
        "!=",
        "!",
        ",",
        "\\",
        "a",
        "é",
        " ",
    ]
)
_FIELD_TEXT = st.one_of(st.text(), st.lists(_FIELD_PIECES).map("".join))


class SelectorPropertyTests(SynchronousTestCase):
    """
    Property tests: the parsers fail only with L{SelectorError}, and the
    canonical string of a selector parses back to the same selector.
    """

    @settings(max_examples=500, deadline=None)
    @given(_LABEL_TEXT)
    def test_label_parse_total(self, text: str) -> None:
        try:
            selector = parse_label_selector(text)
        except SelectorError as error:
            self.assertTrue(error.message)
            return
        self.assertEqual(parse_label_selector(str(selector)), selector)

    @settings(max_examples=300, deadline=None)
    @given(st.lists(_REQUIREMENT))
    def test_label_round_trip(self, requirements: list[Requirement]) -> None:
        ordered = tuple(sorted(requirements, key=lambda requirement: requirement.key))
        selector = LabelSelector(ordered)
        self.assertEqual(parse_label_selector(str(selector)), selector)

    @settings(max_examples=300, deadline=None)
    @given(st.lists(_REQUIREMENT), st.dictionaries(_KEY, _VALUE))
    def test_label_matches_all_requirements(
        self, requirements: list[Requirement], labels: dict[str, str]
    ) -> None:
        selector = LabelSelector(tuple(requirements))
        self.assertEqual(
            selector.matches(labels),
            all(requirement.matches(labels) for requirement in requirements),
        )

    @settings(max_examples=500, deadline=None)
    @given(_FIELD_TEXT)
    def test_field_parse_total(self, text: str) -> None:
        try:
            selector = parse_field_selector(text)
        except SelectorError as error:
            self.assertTrue(error.message)
            return
        self.assertEqual(parse_field_selector(str(selector)), selector)

    @settings(max_examples=300, deadline=None)
    @given(st.lists(_FIELD_TERM))
    def test_field_round_trip(self, terms: list[FieldTerm]) -> None:
        selector = FieldSelector(tuple(sorted(terms, key=str)))
        self.assertEqual(parse_field_selector(str(selector)), selector)

    @settings(max_examples=300, deadline=None)
    @given(st.text(), st.sampled_from(["=", "==", "!="]))
    def test_field_value_escaping(self, value: str, operator: str) -> None:
        text = "metadata.name" + operator + escape_field_value(value)
        selector = parse_field_selector(text)
        self.assertEqual(
            selector.terms, (FieldTerm("metadata.name", value, operator == "!="),)
        )
