"""SMS cost per language: every citizen-facing text of the catalogs, as the composer
would send it (GSM-7 mapping, segment budget, paging), counted in segments.

Placeholders are filled with typical values (a reference, a service, a phone number), so
the figures are what a citizen's phone receives. Run from the project root::

    .venv/bin/python bench/sms_segments_by_language.py
"""

from __future__ import annotations

import re
import statistics
import sys
from pathlib import Path

from babel.messages.pofile import read_po

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.i18n import localizer  # noqa: E402
from channels.sms.composer import compose, count_segments  # noqa: E402

SAMPLE = {
    "reference": "BC-7K3Q9P", "provisional": "BC-7K3Q9P", "service": "Birth certificate",
    "phone": "311", "hours": "Monday to Friday, 8 am to 6 pm", "organisation": "City services",
    "code": "482913", "minutes": "15", "count": "2", "limit": "1000", "field": "Date of birth",
    "stage": "In review", "status": "Birth certificate BC-7K3Q9P: In review.",
}  # fmt: skip
PLACEHOLDER = re.compile(r"\{(\w*)\}")


def texts(language: str) -> list[str]:
    with (ROOT / "locales" / "messages.pot").open("rb") as stream:
        catalog = read_po(stream)
    words = localizer(language)
    out = []
    for message in catalog:
        if not message.id:
            continue
        msgid = message.id[0] if isinstance(message.id, tuple) else message.id
        text = words.gettext(msgid)
        out.append(PLACEHOLDER.sub(lambda m: SAMPLE.get(m.group(1), "x"), text))
    return out


def main() -> None:
    languages = sorted(p.name for p in (ROOT / "locales").iterdir() if p.is_dir())
    print(f"{'language':<9}{'texts':>6}{'avg segments':>14}{'UCS-2':>7}{'>1 segment':>12}"
          f"{'paged (>3)':>12}{'avg chars':>11}")  # fmt: skip
    for language in languages:
        bodies = texts(language)
        first_pages = [compose([body], 3, "Reply MORE for the rest.")[0] for body in bodies]
        counts = [count_segments(page) for page in first_pages]
        segments = [c.segments for c in counts]
        ucs2 = sum(c.encoding != "GSM-7" for c in counts)
        paged = sum(len(compose([b], 3, "Reply MORE for the rest.")) > 1 for b in bodies)
        print(f"{language:<9}{len(bodies):>6}{statistics.mean(segments):>14.2f}{ucs2:>7}"
              f"{sum(s > 1 for s in segments):>12}{paged:>12}"
              f"{statistics.mean(len(b) for b in bodies):>11.1f}")  # fmt: skip


if __name__ == "__main__":
    main()
