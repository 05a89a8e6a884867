"""The SMS composer: exact GSM-7/UCS-2 segment counting, meaning-preserving GSM-7
normalisation, and paging a reply turn within a segment budget."""

from __future__ import annotations

import unicodedata

import pytest

from channels.base import Button
from channels.sms.composer import (
    GSM7_BASIC,
    GSM7_EXTENSION,
    SegmentCount,
    code_units,
    compose,
    count_segments,
    encoding_of,
    minimum_segments,
    numbered_menu_lines,
    septets,
    split_into_segments,
    to_gsm7,
)

# 3GPP TS 23.038 default alphabet by code point, 0x00-0x7F, with None for 0x1B (escape).
GSM_TABLE = [
    *(0x40, 0xA3, 0x24, 0xA5, 0xE8, 0xE9, 0xF9, 0xEC, 0xF2, 0xC7, 0x0A, 0xD8, 0xF8, 0x0D),
    *(0xC5, 0xE5, 0x394, 0x5F, 0x3A6, 0x393, 0x39B, 0x3A9, 0x3A0, 0x3A8, 0x3A3, 0x398),
    *(0x39E, None, 0xC6, 0xE6, 0xDF, 0xC9, 0x20, 0x21, 0x22, 0x23, 0xA4),
    *range(0x25, 0x40),
    0xA1,
    *range(0x41, 0x5B),
    *(0xC4, 0xD6, 0xD1, 0xDC, 0xA7, 0xBF),
    *range(0x61, 0x7B),
    *(0xE4, 0xF6, 0xF1, 0xFC, 0xE0),
]
EXTENSION_TABLE = [0x0C, 0x5E, 0x7B, 0x7D, 0x5C, 0x5B, 0x7E, 0x5D, 0x7C, 0x20AC]

MORE = "Reply MORE for the rest."
MORE_RU = "Ответьте ЕЩЁ, чтобы прочитать дальше."

ENGLISH = (
    "Your application for a resident parking permit has been received. "
    "We will check the documents you sent within five working days! "
    "If anything is missing, we will text you a list of what to send, and how. "
    "You can follow the application at any time by replying STATUS to this number. "
    "Your reference is BC-7K3Q9P; please keep it, because the counter will ask for it. "
    "The permit costs 40 euros a year and is valid for one vehicle registered at your address. "
    "Payment is possible online, by bank transfer, or at the counter of the town hall. "
    "Once paid, the permit is active the next working day and you do not need a sticker. "
    "Is something wrong? Reply HELP and an agent will call you back during office hours."
)
RUSSIAN = (
    "Ваше заявление на разрешение для парковки жителя получено. "
    "Мы проверим присланные документы в течение пяти рабочих дней. "
    "Если чего-то не хватает, мы пришлём вам список недостающих документов. "
    "Следить за заявлением можно, ответив СТАТУС на этот номер. "
    "Ваш номер обращения BC-7K3Q9P, сохраните его, его спросят в окне приёма."
)


def body_of(pages: list[str], prompt: str) -> list[str]:
    """Each page without the more prompt, asserting every page but the last ends with it."""
    bodies = []
    for index, page in enumerate(pages):
        if index < len(pages) - 1:
            assert page.endswith("\n" + prompt), page
            bodies.append(page.removesuffix("\n" + prompt))
        else:
            assert not page.endswith(prompt), page
            bodies.append(page)
    return bodies


def test_alphabet_matches_3gpp_23_038() -> None:
    assert len(GSM_TABLE) == 128
    assert frozenset(chr(c) for c in GSM_TABLE if c is not None) == GSM7_BASIC
    assert frozenset(map(chr, EXTENSION_TABLE)) == GSM7_EXTENSION
    alphabet = "".join(sorted(GSM7_BASIC))
    assert count_segments(alphabet) == SegmentCount("GSM-7", 127, 1, 160)
    assert to_gsm7(alphabet) == alphabet  # normalisation leaves GSM-7 text alone


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("", SegmentCount("GSM-7", 0, 0, 160), id="empty"),
        pytest.param("a" * 160, SegmentCount("GSM-7", 160, 1, 160), id="gsm-160"),
        pytest.param("a" * 161, SegmentCount("GSM-7", 161, 2, 153), id="gsm-161"),
        pytest.param("a" * 306, SegmentCount("GSM-7", 306, 2, 153), id="gsm-306"),
        pytest.param("a" * 307, SegmentCount("GSM-7", 307, 3, 153), id="gsm-307"),
        pytest.param("\r\n@£", SegmentCount("GSM-7", 4, 1, 160), id="gsm-controls"),
        pytest.param("€" * 80, SegmentCount("GSM-7", 160, 1, 160), id="ext-80-euro"),
        pytest.param("€" * 81, SegmentCount("GSM-7", 162, 2, 153), id="ext-81-euro"),
        pytest.param("{}[]~|^\\\f", SegmentCount("GSM-7", 18, 1, 160), id="ext-all-double"),
        pytest.param("a" * 152 + "€", SegmentCount("GSM-7", 154, 1, 160), id="ext-single"),
        pytest.param(
            "a" * 152 + "€" + "a" * 10, SegmentCount("GSM-7", 164, 2, 153), id="ext-straddle"
        ),
        # 306 septets is 2 x 153, but the escape pair cannot straddle: greedy gives 3.
        pytest.param(
            "a" * 152 + "€" + "a" * 152, SegmentCount("GSM-7", 306, 3, 153), id="ext-no-split"
        ),
        pytest.param("Ж" * 70, SegmentCount("UCS-2", 70, 1, 70), id="ucs2-70"),
        pytest.param("Ж" * 71, SegmentCount("UCS-2", 71, 2, 67), id="ucs2-71"),
        pytest.param("Ж" * 134, SegmentCount("UCS-2", 134, 2, 67), id="ucs2-134"),
        pytest.param("Ж" * 135, SegmentCount("UCS-2", 135, 3, 67), id="ucs2-135"),
        pytest.param("😀" * 35, SegmentCount("UCS-2", 70, 1, 70), id="emoji-35"),
        pytest.param("Hello 😀", SegmentCount("UCS-2", 8, 1, 70), id="emoji-makes-ucs2"),
        pytest.param("a" * 69 + "😀", SegmentCount("UCS-2", 71, 2, 67), id="emoji-71-units"),
        # 134 units is 2 x 67, but the surrogate pair cannot straddle: greedy gives 3.
        pytest.param(
            "Ж" * 66 + "😀" + "Ж" * 66, SegmentCount("UCS-2", 134, 3, 67), id="emoji-no-split"
        ),
        pytest.param("€ ç", SegmentCount("UCS-2", 3, 1, 70), id="euro-in-ucs2-is-one-unit"),
    ],
)
def test_count_segments(text: str, expected: SegmentCount) -> None:
    assert count_segments(text) == expected
    assert code_units(text) == expected.units


@pytest.mark.parametrize(
    ("text", "segments"),
    [
        pytest.param("a" * 152 + "€" + "a" * 10, ["a" * 152, "€" + "a" * 10], id="euro-moves"),
        pytest.param(
            "a" * 152 + "€" + "a" * 152, ["a" * 152, "€" + "a" * 151, "a"], id="euro-cascade"
        ),
        pytest.param(
            "Ж" * 66 + "😀" + "Ж" * 66, ["Ж" * 66, "😀" + "Ж" * 65, "Ж"], id="emoji-moves"
        ),
        pytest.param("a" * 161, ["a" * 153, "a" * 8], id="plain"),
        pytest.param("short", ["short"], id="single"),
        pytest.param("", [], id="empty"),
    ],
)
def test_split_into_segments_never_splits_a_pair(text: str, segments: list[str]) -> None:
    assert split_into_segments(text) == segments


@pytest.mark.parametrize(
    ("text", "encoding"),
    [
        pytest.param("Hello, world! 100% @home £5 ¥ ¿Qué? ¡Olé!", "GSM-7", id="latin"),
        pytest.param("ΔΦΓΛΩΠΨΣΘΞ ÆæßÉ ÄÖÑÜ§ äöñüà", "GSM-7", id="gsm-greek-accented"),
        pytest.param("a{b}c[d]e~f|g^h\\i€", "GSM-7", id="extension"),
        pytest.param("ç", "UCS-2", id="small-c-cedilla"),
        pytest.param("Sí", "UCS-2", id="i-acute-only-grave-is-gsm"),
        pytest.param("`", "UCS-2", id="backtick"),
        pytest.param("crêpe", "UCS-2", id="e-circumflex"),
        pytest.param("Łukasz", "UCS-2", id="l-stroke"),
        pytest.param("Привет", "UCS-2", id="cyrillic"),
        pytest.param("\u2126", "UCS-2", id="ohm-sign-not-omega"),
        pytest.param("ok 👍", "UCS-2", id="emoji"),
    ],
)
def test_encoding_of(text: str, encoding: str) -> None:
    assert encoding_of(text) == encoding


def test_septets_and_code_units() -> None:
    assert septets("a€") == 3
    assert code_units("a😀") == 3
    with pytest.raises(ValueError, match="not GSM-7"):
        septets("Ж")


@pytest.mark.parametrize(
    ("text", "expected", "encoding"),
    [
        pytest.param("It’s “fine” – really…", 'It\'s "fine" - really...', "GSM-7", id="typography"),
        pytest.param("‘a’ ‚b‛ 5′", "'a' 'b' 5'", "GSM-7", id="single-quotes"),
        pytest.param("„a‟ 6″ «b»", '"a" 6" "b"', "GSM-7", id="double-quotes"),
        pytest.param("1‒2—3―4−5", "1-2-3-4-5", "GSM-7", id="dashes"),
        pytest.param("10\u00a0km", "10 km", "GSM-7", id="nbsp"),
        pytest.param("1\u202f000\u2009m\u3000x", "1 000 m x", "GSM-7", id="other-spaces"),
        pytest.param("a\tb", "a b", "GSM-7", id="tab"),
        pytest.param("in\u00adfor\u200bma\u200c\u200dtion\ufeff", "information", "GSM-7", id="zw"),
        pytest.param("• one\n• two", "- one\n- two", "GSM-7", id="bullets"),
        pytest.param("9·30", "9.30", "GSM-7", id="middle-dot"),
        pytest.param("Dear Łukasz Wójcik", "Dear Łukasz Wójcik", "UCS-2", id="name-kept"),
        pytest.param("Ref BC-7K3Q9P", "Ref BC-7K3Q9P", "GSM-7", id="reference-kept"),
        pytest.param("crêpe naïve", "crêpe naïve", "UCS-2", id="accents-kept"),
        pytest.param("«Привет» — да…", '"Привет" - да...', "UCS-2", id="cyrillic-kept"),
        pytest.param("ok 👍", "ok 👍", "UCS-2", id="emoji-kept"),
    ],
)
def test_to_gsm7(text: str, expected: str, encoding: str) -> None:
    assert to_gsm7(text) == expected
    assert encoding_of(to_gsm7(text)) == encoding


def test_to_gsm7_turns_every_space_separator_into_a_space() -> None:
    spaces = [chr(c) for c in range(0x10000) if unicodedata.category(chr(c)) == "Zs"]
    assert len(spaces) == 17
    assert to_gsm7("".join(spaces)) == " " * 17


def test_typography_costs_the_minimum() -> None:
    text = "“" + "a" * 100 + "”"
    assert count_segments(text) == SegmentCount("UCS-2", 102, 2, 67)
    assert minimum_segments(text) == 1
    assert count_segments(to_gsm7("It’s “fine” – really…")).segments == 1
    assert minimum_segments("Ж" * 71) == 2


@pytest.mark.parametrize(
    ("buttons", "expected"),
    [
        pytest.param(
            [Button("Yes", "/affirm"), Button("No", "/deny")],
            ["Reply 1 for Yes", "Reply 2 for No"],
            id="two",
        ),
        pytest.param([], [], id="none"),
    ],
)
def test_numbered_menu_lines(buttons: list[Button], expected: list[str]) -> None:
    assert numbered_menu_lines(buttons, lambda n, option: f"Reply {n} for {option}") == expected


@pytest.mark.parametrize(
    ("texts", "budget", "expected"),
    [
        pytest.param(["Hello.", "How can I help?"], 1, ["Hello.\nHow can I help?"], id="short"),
        pytest.param(["It’s done…"], 1, ["It's done..."], id="normalised"),
        pytest.param(["a" * 300], 2, ["a" * 300], id="concatenated-within-budget"),
        pytest.param(
            ["A" * 98 + ".", "B" * 98 + "."],
            1,
            ["A" * 98 + ".\n" + MORE, "B" * 98 + "."],
            id="line-break-boundary",
        ),
        pytest.param(
            ["First sentence. " + "x" * 149 + "."],
            1,
            ["First sentence.\n" + MORE, "x" * 149 + "."],  # last page: no prompt needed
            id="sentence-moves-whole",
        ),
    ],
)
def test_compose_exact(texts: list[str], budget: int, expected: list[str]) -> None:
    assert compose(texts, budget, MORE) == expected


@pytest.mark.parametrize(
    ("texts", "budget", "prompt", "encodings"),
    [
        pytest.param([ENGLISH], 3, MORE, {"GSM-7"}, id="english-3"),
        pytest.param([ENGLISH], 1, MORE, {"GSM-7"}, id="english-1"),
        pytest.param([RUSSIAN], 2, MORE_RU, {"UCS-2"}, id="russian-2"),
        pytest.param([RUSSIAN], 1, MORE_RU, {"UCS-2"}, id="russian-1"),
        pytest.param([ENGLISH, "Спасибо!"], 1, MORE, {"GSM-7", "UCS-2"}, id="mixed-per-page"),
    ],
)
def test_compose_pages(texts: list[str], budget: int, prompt: str, encodings: set[str]) -> None:
    pages = compose(texts, budget, prompt)
    joined = "\n".join(texts)
    assert count_segments(joined).segments > budget
    assert len(pages) >= 2
    assert all(count_segments(page).segments <= budget for page in pages)
    assert {count_segments(page).encoding for page in pages} == encodings
    bodies = body_of(pages, prompt)
    assert " ".join(bodies).split() == joined.split()  # every word, in order, none cut
    if budget > 1:  # pages this large always end at a sentence boundary
        assert all(body.endswith((".", "!", "?")) for body in bodies)


def test_compose_latin_page_stays_gsm7_next_to_a_cyrillic_page() -> None:
    pages = compose([ENGLISH, "Спасибо!"], 1, MORE)
    assert [count_segments(p).encoding for p in pages[:-1]] == ["GSM-7"] * (len(pages) - 1)
    assert pages[-1].endswith("Спасибо!")
    assert count_segments(pages[-1]).encoding == "UCS-2"


def test_compose_splits_a_long_sentence_at_words_only() -> None:
    sentence = " ".join(f"word{n:03}" for n in range(60)) + "."  # 480 chars, no break
    pages = compose([sentence], 1, MORE)
    bodies = body_of(pages, MORE)
    words = set(sentence.split())
    assert all(set(body.split()) <= words for body in bodies)
    assert " ".join(bodies) == sentence
    assert [len(body.split()) for body in bodies] == [17, 17, 17, 9]


@pytest.mark.parametrize(
    ("word", "prompt", "lengths"),
    [
        pytest.param("ABCDEFGHIJ" * 50, "MORE", [155, 155, 155, 35], id="latin"),
        pytest.param("€" * 100, "MORE", [77, 23], id="extension-counts-double"),
        pytest.param("Ж" * 150, "ЕЩЁ", [66, 66, 18], id="cyrillic"),
        pytest.param("😀" * 40, "MORE", [32, 8], id="emoji-pairs-whole"),
    ],
)
def test_compose_hard_splits_a_giant_word(word: str, prompt: str, lengths: list[int]) -> None:
    pages = compose([word], 1, prompt)
    bodies = body_of(pages, prompt)
    assert "".join(bodies) == word
    assert [len(body) for body in bodies] == lengths
    assert all(count_segments(page).segments == 1 for page in pages)


@pytest.mark.parametrize(
    ("budget", "prompt"),
    [
        pytest.param(0, MORE, id="zero-budget"),
        pytest.param(1, "x" * 160, id="prompt-fills-page"),
    ],
)
def test_compose_rejects_impossible_budgets(budget: int, prompt: str) -> None:
    with pytest.raises(ValueError, match="budget_segments"):
        compose(["y" * 400], budget, prompt)
