"""One multilingual NLU model or one model per language? Trains both (NLU only, the
pipeline of ``config.yml``) and scores each on the held-out sets ``tests/nlu_data/
<lang>_heldout.yml``: intent accuracy, training time and model size. Run from the
project root (a few minutes on 2 cores)::

    .venv/bin/python bench/nlu_compare.py
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.devstack import rasa_base_env, rasa_command  # noqa: E402

LANGUAGES = sorted(p.name for p in (ROOT / "intents").iterdir() if p.is_dir())


def train(data: list[str], out: Path, name: str) -> tuple[Path, float]:
    folder = out / f"data-{name}"  # `rasa train nlu --nlu` takes one path: gather them
    for source in data:
        for path in sorted((ROOT / source).rglob("*.yml")):
            target = folder / source.replace("/", "_") / path.name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
    started = time.perf_counter()
    subprocess.run(
        rasa_command("train", "nlu", "--config", "config.yml", "--nlu", str(folder),
                     "--out", str(out), "--fixed-model-name", name),
        cwd=ROOT, env=rasa_base_env(), check=True, capture_output=True,
    )  # fmt: skip
    return out / f"{name}.tar.gz", time.perf_counter() - started


def accuracy(model: Path, language: str, out: Path) -> tuple[float, int]:
    results = out / f"results-{model.stem}-{language}"
    subprocess.run(
        rasa_command("test", "nlu", "--nlu", f"tests/nlu_data/{language}_heldout.yml",
                     "--model", str(model), "--out", str(results)),
        cwd=ROOT, env=rasa_base_env(), check=True, capture_output=True,
    )  # fmt: skip
    report = json.loads((results / "intent_report.json").read_text())
    return float(report["accuracy"]), int(report["weighted avg"]["support"])


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="civicgate-nlu-") as directory:
        out = Path(directory)
        rows = []
        model, seconds = train([f"intents/{lang}" for lang in LANGUAGES], out, "multilingual")
        size = model.stat().st_size / 1e6
        for language in LANGUAGES:
            score, n = accuracy(model, language, out)
            rows.append(("one multilingual model", language, score, n, seconds, size))
        for language in LANGUAGES:
            model, seconds = train([f"intents/{language}"], out, f"only-{language}")
            score, n = accuracy(model, language, out)
            rows.append(
                ("one model per language", language, score, n, seconds, model.stat().st_size / 1e6)
            )
    print(
        f"{'set-up':<24}{'held-out':>9}{'messages':>9}{'intent acc.':>12}"
        f"{'train s':>9}{'model MB':>9}"
    )
    for setup, language, score, n, seconds, size in rows:
        print(f"{setup:<24}{language:>9}{n:>9}{score:>12.3f}{seconds:>9.1f}{size:>9.1f}")


if __name__ == "__main__":
    main()
