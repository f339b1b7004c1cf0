"""End-to-end tests of `lyric_valence.data` and `lyric-valence prepare` on a small Kaggle-format file of new text."""

import csv
import json
import random
from pathlib import Path

import datasets
import numpy as np
import pandas as pd
import pytest

from lyric_valence.commands.prepare import main
from lyric_valence.data import DataOptions, load_splits, prepare
from lyric_valence.errors import UserError

EMOBANK = Path(__file__).resolve().parents[1] / "data" / "emobank.csv"

# Word lists for original, English-looking lyric lines; any two generated songs share almost no word 3-grams.
VERBS = "painted carried followed wandered borrowed whispered chased counted folded dreamed buried lifted".split()
ADJECTIVES = "crooked golden quiet restless silver tired hollow gentle broken yellow distant careless".split()
NOUNS = (
    "lantern harbour window river kettle ladder garden engine letter compass blanket mirror station "
    "orchard candle meadow bicycle chimney ribbon pocket"
).split()
PREPOSITIONS = "beyond beneath across behind toward inside".split()
TEMPLATES = (
    "i {verb} the {adj} {noun} {prep} the {noun2}",
    "we {verb} a {noun} and {verb2} the {noun2} tonight",
    "you {verb} my {adj} {noun} {prep} a {adj2} {noun2}",
    "oh the {noun} is {adj} and the {noun2} is {adj2}",
)
GERMAN_SONG = (
    "Ich laufe durch die Stadt im Regen\r\nund niemand wartet mehr auf mich\r\ndie Lichter gehen langsam aus\r\n"
    "Wir tanzen bis der Morgen kommt\r\nund singen Lieder ohne Ende\r\nheute Nacht gehört die Welt uns"
)
ARTISTS = [f"Artist {letter}" for letter in "ABCDEFGH"]
SONGS_PER_ARTIST = 4


def lyric_line(rng: random.Random) -> str:
    words = {
        "verb": rng.choice(VERBS),
        "verb2": rng.choice(VERBS),
        "adj": rng.choice(ADJECTIVES),
        "adj2": rng.choice(ADJECTIVES),
        "noun": rng.choice(NOUNS),
        "noun2": rng.choice(NOUNS),
        "prep": rng.choice(PREPOSITIONS),
    }
    return rng.choice(TEMPLATES).format(**words)


def song_lines(rng: random.Random) -> tuple[list[str], list[str]]:
    """Eight verse lines and a two-line chorus."""
    return [lyric_line(rng) for _ in range(8)], [lyric_line(rng) for _ in range(2)]


def song_text(verses: list[str], chorus: list[str], chorus_times: int = 2) -> str:
    """A song with CRLF line endings and "[Chorus]" markers."""
    parts = verses[:4] + (["[Chorus]"] + chorus) * (chorus_times - 1) + verses[4:] + ["[Chorus]"] + chorus
    return "\r\n".join(parts)


def kaggle_rows() -> list[dict]:
    """
    45 rows: 8 artists x 4 songs; a remix (near-duplicate: extra chorus, one changed line) of each artist's first
    song; a live take (exact duplicate after normalisation) of Artist A's second song; a cover of Artist B's third
    song by "Cover Band", which has one song of its own; a German song; an empty row.
    """
    rng = random.Random(7)
    rows = []

    def add(artist, title, text):
        rows.append({"artist": artist, "seq": text, "song": title, "label": round(rng.uniform(0.05, 0.95), 3)})

    originals = {}
    for artist in ARTISTS:
        for number in range(SONGS_PER_ARTIST):
            verses, chorus = song_lines(rng)
            originals[artist, number] = verses, chorus
            add(artist, f"{artist} song {number}", song_text(verses, chorus))
    for artist in ARTISTS:
        verses, chorus = originals[artist, 0]
        changed = verses[:2] + [lyric_line(rng)] + verses[3:]
        add(artist, f"{artist} song 0 [Jetstream Mix]", song_text(changed, chorus, chorus_times=3))
    verses, chorus = originals["Artist A", 1]
    add("Artist A", "Artist A song 1 (Live)", song_text(verses, chorus).replace("\r\n", "  \n"))
    verses, chorus = originals["Artist B", 2]
    add("Cover Band", "Artist B song 2 (cover)", song_text(verses, chorus))
    add("Cover Band", "Cover Band original", song_text(*song_lines(rng)))
    add("Die Band", "Regenlied", GERMAN_SONG)
    add("Artist C", "Silence", "  \r\n  ")
    rows[3]["seq"] = "the cafe\u0301 lights are low  \r\n" + rows[3]["seq"]  # decomposed é, to be composed (NFC)
    return rows


def write_kaggle_csv(path: Path, rows: list[dict]) -> Path:
    """Kaggle layout: unnamed index column, artist, seq, song, label; CRLF rows, quoted multi-line fields."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\r\n", quoting=csv.QUOTE_MINIMAL)
        writer.writerow(["", "artist", "seq", "song", "label"])
        for index, row in enumerate(rows):
            writer.writerow([index, row["artist"], row["seq"], row["song"], row["label"]])
    return path


@pytest.fixture(scope="module")
def kaggle_csv(tmp_path_factory) -> Path:
    return write_kaggle_csv(tmp_path_factory.mktemp("kaggle") / "lyrics.csv", kaggle_rows())


ENGLISH = DataOptions(language=["en"], validation_fraction=0.2, test_fraction=0.2)


@pytest.fixture(scope="module")
def prepared(kaggle_csv):
    return prepare(kaggle_csv, options=ENGLISH)


def test_counts_per_step_are_exact(prepared):
    counts = prepared.counts
    assert counts["rows_read"] == 45
    assert counts["dropped_empty_text"] == 1
    assert counts["dropped_missing_label"] == 0
    assert counts["dropped_other_language"] == 1
    assert counts["duplicate_groups"] == 10
    assert counts["songs_in_duplicate_groups"] == 20
    assert counts["duplicates_merged"] == 10
    assert counts["train_songs"] + counts["validation_songs"] + counts["test_songs"] == 43
    assert {name: prepared.splits[name].num_rows for name in prepared.splits} == {
        "train": counts["train_songs"],
        "validation": counts["validation_songs"],
        "test": counts["test_songs"],
    }
    assert min(counts["validation_songs"], counts["test_songs"]) > 0


def test_duplicates_found_are_the_planted_ones(prepared):
    rows = prepared.rows.set_index("title")
    for artist in ARTISTS:
        assert (
            rows.loc[f"{artist} song 0 [Jetstream Mix]", "duplicate_group"] == rows.loc[f"{artist} song 0", "song_id"]
        )
    assert rows.loc["Artist A song 1 (Live)", "duplicate_group"] == rows.loc["Artist A song 1", "song_id"]
    assert rows.loc["Artist B song 2 (cover)", "duplicate_group"] == rows.loc["Artist B song 2", "song_id"]
    remix, original = rows.loc["Artist A song 0 [Jetstream Mix]"], rows.loc["Artist A song 0"]
    assert remix["duplicate_group_label"] == pytest.approx((remix["label"] + original["label"]) / 2)


def test_no_artist_and_no_duplicate_group_spans_two_splits(prepared):
    rows = prepared.rows
    assert rows.groupby("artist")["split"].nunique().max() == 1
    assert rows.groupby("duplicate_group")["split"].nunique().max() == 1
    # the cover ties Cover Band to Artist B
    assert rows.loc[rows["artist"] == "Cover Band", "group"].unique().tolist() == ["Artist B"]


def test_leak_rate_is_zero_with_grouping_and_positive_without(kaggle_csv):
    _, grouped = load_splits(kaggle_csv, validation_fraction=0.2, test_fraction=0.2)
    _, by_song = load_splits(
        kaggle_csv, validation_fraction=0.2, test_fraction=0.2, group_split=False, group_by_duplicates=False
    )
    assert grouped["test_leak_rate"] == grouped["validation_leak_rate"] == 0
    assert by_song["test_leak_rate"] > 0


def test_text_is_normalised_and_markers_kept_or_stripped(kaggle_csv):
    kept = prepare(kaggle_csv).rows.set_index("title")
    stripped = prepare(kaggle_csv, options=DataOptions(strip_section_markers=True)).rows.set_index("title")
    text = kept.loc["Artist A song 0", "text"]
    assert "\r" not in text and "[Chorus]" in text
    assert not any(line != line.rstrip() for row in kept["text"] for line in row.split("\n"))
    assert kept.loc["Artist A song 3", "text"].startswith("the caf\u00e9 lights are low\n")
    assert "[Chorus]" not in stripped.loc["Artist A song 0", "text"]
    assert stripped.loc["Artist A song 0", "text"].split("\n")[4] == kept.loc["Artist A song 0", "text"].split("\n")[5]


def test_languages_are_kept_as_a_column(kaggle_csv, prepared):
    assert set(prepared.rows["language"]) == {"en"}
    assert prepared.languages == {"en": 43, "de": 1}
    every_language = prepare(kaggle_csv, options=DataOptions(language=["any"])).rows
    assert every_language.loc[every_language["artist"] == "Die Band", "language"].tolist() == ["de"]
    assert "language" not in prepare(kaggle_csv).rows  # not identified unless asked


def test_split_is_seeded(kaggle_csv):
    first, _ = load_splits(kaggle_csv, seed=1)
    again, _ = load_splits(kaggle_csv, seed=1)
    other, _ = load_splits(kaggle_csv, seed=2)
    assert first["test"]["song_id"] == again["test"]["song_id"]
    assert any(first[name]["song_id"] != other[name]["song_id"] for name in first)


def test_json_jsonl_and_parquet_prepare_like_csv(tmp_path, kaggle_csv, prepared):
    frame = pd.DataFrame(kaggle_rows()).reset_index().rename(columns={"index": "Unnamed: 0"})
    frame.to_json(tmp_path / "lyrics.jsonl", orient="records", lines=True)
    frame.to_parquet(tmp_path / "lyrics.parquet")
    for path in (tmp_path / "lyrics.jsonl", tmp_path / "lyrics.parquet"):
        other = prepare(path, options=ENGLISH)
        assert other.counts == prepared.counts
        assert other.rows["text"].tolist() == prepared.rows["text"].tolist()


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda rows: rows[4].update(label="loud"), "row 5, column 'label': 'loud' is not a number"),
        (lambda rows: rows[2].update(label=1.5), "row 3, column 'label': label 1.5 is outside [0, 1]"),
    ],
)
def test_bad_rows_raise_data_error_naming_row_and_column(tmp_path, change, message):
    rows = kaggle_rows()
    change(rows)
    with pytest.raises(UserError, match=message.replace("[", r"\[").replace("]", r"\]")):
        prepare(write_kaggle_csv(tmp_path / "bad.csv", rows))


def test_repeated_song_id_and_bad_encoding_raise_data_error(tmp_path):
    frame = pd.DataFrame(
        {"id": ["a", "b", "a"], "text": ["one two", "three four", "five six"], "label": [0.1, 0.2, 0.3]}
    )
    frame.to_csv(tmp_path / "ids.csv", index=False)
    with pytest.raises(UserError, match=r"ids.csv: row 1, column 'id': song id 'a' is not unique"):
        prepare(tmp_path / "ids.csv")
    (tmp_path / "latin1.csv").write_bytes("text,label\ncaf\xe9,0.5\n".encode("latin-1"))
    with pytest.raises(UserError, match=r"latin1.csv: line 2 is not valid UTF-8"):
        prepare(tmp_path / "latin1.csv")


def test_songs_without_artist_are_not_grouped_together_and_missing_ids_are_errors(tmp_path):
    rng = random.Random(5)
    frame = pd.DataFrame(
        {
            "id": [f"s{i}" for i in range(12)],
            "artist": ["Solo"] * 4 + [None] * 8,
            "text": ["\n".join(song_lines(rng)[0]) for _ in range(12)],
            "label": [0.5] * 12,
        }
    )
    frame.to_csv(tmp_path / "no_artist.csv", index=False)
    rows = prepare(tmp_path / "no_artist.csv").rows
    assert rows["group"].tolist() == ["Solo"] * 4 + [f"s{i}" for i in range(4, 12)]
    frame.loc[6, "id"] = None
    frame.to_csv(tmp_path / "no_id.csv", index=False)
    with pytest.raises(UserError, match=r"no_id.csv: row 7, column 'id': no song id"):
        prepare(tmp_path / "no_id.csv")


def test_emobank_format_keeps_its_own_split(tmp_path):
    rng = random.Random(3)
    rows = [
        {"id": f"s{i}", "split": split, "V": round(rng.uniform(1, 5), 2), "A": 3.0, "D": 3.0, "text": lyric_line(rng)}
        for i, split in enumerate(["train"] * 12 + ["dev"] * 4 + ["test"] * 4)
    ]
    pd.DataFrame(rows).to_csv(tmp_path / "emobank.csv", index=False)
    splits, counts = load_splits(tmp_path / "emobank.csv")
    assert (counts["train_songs"], counts["validation_songs"], counts["test_songs"]) == (12, 4, 4)
    assert splits["validation"]["song_id"] == [f"s{i}" for i in range(12, 16)]
    assert splits["train"]["label"][0] == pytest.approx((rows[0]["V"] - 1) / 4)


def test_real_emobank_prepares_with_its_own_split():
    splits, counts = load_splits(EMOBANK)
    assert counts["rows_read"] == 10062 and counts["dropped_empty_text"] == 1
    assert (counts["train_songs"], counts["validation_songs"], counts["test_songs"]) == (8062, 999, 1000)
    assert 0 < counts["test_leak_rate"] < 0.2  # the authors' split has near-duplicate sentences across splits
    assert min(min(split["label"]) for split in splits.values()) >= 0


def test_cli_writes_splits_and_data_card_that_load_splits_reads_back(tmp_path, kaggle_csv, capsys):
    out = tmp_path / "prepared"
    args = [str(kaggle_csv), "--out", str(out), "--validation_fraction", "0.2", "--test_fraction", "0.2"]
    assert main(args) == 0
    splits, counts = load_splits(out)
    assert isinstance(splits, datasets.DatasetDict)
    assert {"song_id", "text", "label", "group", "artist", "duplicate_group", "language"} <= set(
        splits["train"].column_names
    )
    assert sum(counts.values()) == 43
    card = json.loads((out / "data_card.json").read_text())
    assert card["counts"]["dropped_other_language"] == 1
    assert card["test_leak_rate_by_grouping"]["artist + near-duplicates"] == 0
    assert card["test_leak_rate_by_grouping"]["songs (no grouping)"] > 0
    assert card["chunks_per_song"]["max"] == 1 and card["tokens_per_song"]["max"] < 510
    assert card["duplicate_label_spread"]["groups"] == 10
    assert sum(card["label_histograms"]["test"]) == counts["test_songs"]
    for image in ("labels.png", "tokens_per_song.png", "chunks_per_song.png"):
        assert (out / image).read_bytes().startswith(b"\x89PNG")
    assert "## Counts per step" in (out / "data_card.md").read_text()
    assert main(args) == 2  # refuses to overwrite without --overwrite_output_dir
    assert capsys.readouterr().err.strip().endswith("pass --overwrite_output_dir to replace them")


def test_cli_help_documents_every_flag(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    help_text = capsys.readouterr().out
    for flag in (
        "--out",
        "--language",
        "--strip_section_markers",
        "--group_by_artist",
        "--no_group_by_duplicates",
        "--duplicate_threshold",
        "--tokenizer",
        "--label_range",
        "--overwrite_output_dir",
        "--seed",
    ):
        assert flag in help_text


@pytest.mark.parametrize(
    "args, message",
    [
        (["missing.csv", "--out", "x"], "missing.csv: no such file"),
        (["in.csv"], "the following arguments are required: --out"),
        (["in.csv", "--out", "x", "--test_fraction", "0.95"], "must be positive and sum to less than 1"),
        (["in.csv", "--out", "x", "--label_range", "1"], "--label_range/--label-range: expected 2 arguments"),
    ],
)
def test_cli_user_errors_are_one_line_with_exit_code_2(tmp_path, monkeypatch, capsys, args, message):
    monkeypatch.chdir(tmp_path)
    try:
        code = main(args)
    except SystemExit as exit_info:
        code = exit_info.code
    err = capsys.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and message in err
    assert "Traceback" not in err


def test_group_split_keeps_holdout_sizes_near_the_fractions():
    from lyric_valence.data.split import split_by_group

    group = np.repeat([f"g{i}" for i in range(200)], np.random.default_rng(0).integers(1, 10, size=200))
    group = np.append(group, ["giant"] * 300)  # bigger than a holdout split: must go to train
    split = split_by_group(group, validation_fraction=0.1, test_fraction=0.1, seed=0)
    assert set(split[group == "giant"]) == {"train"}
    for name in ("validation", "test"):
        assert abs((split == name).mean() - 0.1) < 0.02
    assert pd.Series(split).groupby(group).nunique().max() == 1


def test_train_and_prepare_share_the_data_flags_and_their_old_spellings():
    from lyric_valence.commands import prepare, train
    from lyric_valence.data import DataOptions

    flags = [
        "--artist_column", "who", "--no_group_by_artist", "--text-column", "words", "--label_range", "1", "5",
        "--validation_fraction", "0.2", "--strip_section_markers",
    ]  # fmt: skip
    _, prepared, _ = prepare.parse_arguments(["in.csv", "--out", "x", *flags])
    trained = train.parse_arguments(flags)[2]
    for options in (prepared, trained):
        assert isinstance(options, DataOptions)
        assert (options.group_column, options.group_split, options.text_column) == ("who", False, "words")
        assert (options.label_range, options.validation_fraction, options.strip_section_markers) == ([1, 5], 0.2, True)
    assert train.parse_arguments(["--group_split", "False"])[2].group_split is False
