"""The control-character rule is Unicode's category Cc, code point for code point."""
import sys
import unicodedata

from runtime.control_characters import has_control_characters, without_control_characters


def test_every_code_point_is_judged_as_unicode_categorises_it():
    wrong = [hex(c) for c in range(sys.maxunicode + 1)
             if has_control_characters(chr(c)) != (unicodedata.category(chr(c)) == "Cc")]
    assert wrong == []


def test_a_control_character_anywhere_in_a_text_is_found():
    assert has_control_characters("dgaspc-bc\n")
    assert has_control_characters("\x85caz")  # C1: NEXT LINE
    assert has_control_characters("a\x7fb")
    assert not has_control_characters("Ștefan cel Mare, Bacău\u2028")  # a line separator is Zl, not Cc
    assert not has_control_characters(None)
    assert not has_control_characters("")


def test_runs_of_control_characters_and_spaces_become_one_space():
    assert without_control_characters(" a\r\n\tb\x00\x00c  d\x9f") == "a b c d"
    assert without_control_characters("\x1b[31mroșu\x1b[0m") == "[31mroșu [0m"
