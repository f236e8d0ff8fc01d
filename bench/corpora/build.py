"""Builds the real-text corpora of the drift benchmark and tests from installed Debian data.

Two sources of text people wrote, each labelled by topic and shipped by Debian:

- `debian`: package descriptions, grouped by the package's Section: `apt-cache dumpavail`
  names each package's Section, version and Description-md5; the extended description
  itself is in apt's Translation-en lists (fetched by `apt-get update -o
  Acquire::Languages=en`, read with apt-helper), joined on Description-md5. A call is
  prompt = the one-line synopsis, response = the extended description. One item per
  distinct extended description (a source package's -dev/-doc/-data binaries repeat
  theirs), at most `--per-topic` per section, chosen by a hash of the package name so a
  rebuild picks the same ones.
- `wordnet`: noun synsets of WordNet 3.0 (Debian package `wordnet-base`, files
  /usr/share/wordnet/data.noun), grouped by lexicographer file (noun.animal, noun.food,
  ...). A call is prompt = the synset's words, response = its gloss (definition and the
  lexicographers' example sentences).

Every item records where it came from (package and version, or synset offset); the
header line of each file records the Debian release, the package version and the command.
Debian's fortunes* packages and garak are excluded on purpose (reserved for independent
checks), also as descriptions.

Run (root, network to Debian's mirror):
    apt-get update -o Acquire::Languages=en && apt-get install -y wordnet-base
    .venv/bin/python -m bench.corpora.build
Writes bench/corpora/data/{debian,wordnet}.jsonl.gz (a few MB, committed: the benchmark
and the tests read them offline through bench.corpora.load)."""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import re
import subprocess
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

DATA = Path(__file__).parent / "data"

# Sections about what a package is for (not which language it is written in or packaged
# for: libs, python, perl, golang, ... read alike across topics).
DEBIAN_SECTIONS = (
    "admin", "database", "editors", "electronics", "games", "graphics", "hamradio", "mail", "math", "net",
    "science", "sound", "text", "utils", "video", "web",
)
# WordNet 3.0's lexicographer files (lexnames(5WN)): number -> name.
LEXNAMES = {
    4: "noun.act", 5: "noun.animal", 6: "noun.artifact", 7: "noun.attribute", 8: "noun.body",
    9: "noun.cognition", 10: "noun.communication", 11: "noun.event", 13: "noun.food", 14: "noun.group",
    15: "noun.location", 18: "noun.person", 20: "noun.plant", 26: "noun.state", 27: "noun.substance",
    28: "noun.time",
}
EXCLUDED = re.compile(r"^(fortune|garak)", re.IGNORECASE)
MAX_RESPONSE_CHARS = 1200


def _pick(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _release() -> dict[str, str]:
    out = {}
    for path in sorted(Path("/var/lib/apt/lists").glob("*_dists_*_InRelease")):
        fields = dict(line.split(": ", 1) for line in path.read_text(errors="replace").splitlines()[:12]
                      if ": " in line and not line.startswith(" "))
        if "-" not in fields.get("Codename", "-"):
            out = {"origin": fields.get("Origin", ""), "codename": fields.get("Codename", ""),
                   "version": fields.get("Version", ""), "date": fields.get("Date", "")}
    return out


def parse_stanzas(text: str) -> list[dict[str, str]]:
    packages = []
    for block in text.split("\n\n"):
        fields: dict[str, str] = {}
        last = None
        for line in block.splitlines():
            if line.startswith((" ", "\t")) and last:
                fields[last] += "\n" + line
            elif ":" in line:
                last, _, value = line.partition(":")
                fields[last] = value.strip()
        if fields:
            packages.append(fields)
    return packages


def long_description(raw: str) -> tuple[str, str]:
    """Debian's Description field: synopsis on the first line, then the extended text with
    one leading space per line and ' .' for a paragraph break."""
    first, _, rest = raw.partition("\n")
    paragraphs, current = [], []
    for line in rest.splitlines():
        line = line[1:] if line.startswith(" ") else line
        if line.strip() == ".":
            paragraphs.append(" ".join(current))
            current = []
        else:
            current.append(line.strip())
    paragraphs.append(" ".join(current))
    body = "\n\n".join(p for p in paragraphs if p)
    if len(body) > MAX_RESPONSE_CHARS:
        # Cut at a paragraph or sentence end, as an answer would be.
        cut = body[:MAX_RESPONSE_CHARS]
        end = max(cut.rfind("\n\n"), cut.rfind(". "))
        body = cut[: end + 1] if end > 200 else cut
    return first.strip(), body.strip()


def translations() -> dict[str, str]:
    """Description-md5 -> Description-en from every Translation-en list apt fetched."""
    out: dict[str, str] = {}
    lists = sorted(Path("/var/lib/apt/lists").glob("*_i18n_Translation-en*"))
    if not lists:
        raise SystemExit("no Translation-en lists: run apt-get update -o Acquire::Languages=en")
    for path in lists:
        text = subprocess.run(["/usr/lib/apt/apt-helper", "cat-file", str(path)], capture_output=True, text=True,
                              check=True).stdout
        for fields in parse_stanzas(text):
            if "Description-md5" in fields and "Description-en" in fields:
                out[fields["Description-md5"]] = fields["Description-en"]
    return out


def build_debian(per_topic: int) -> tuple[dict, list[dict]]:
    text = subprocess.run(["apt-cache", "dumpavail"], capture_output=True, text=True, check=True).stdout
    english = translations()
    by_section: dict[str, dict[str, dict]] = defaultdict(dict)
    for p in parse_stanzas(text):
        section = p.get("Section", "").rsplit("/", 1)[-1]
        name = p.get("Package", "")
        if section not in DEBIAN_SECTIONS or EXCLUDED.match(name) or EXCLUDED.match(p.get("Source", "")):
            continue
        full = english.get(p.get("Description-md5", ""), p.get("Description", ""))
        synopsis, body = long_description(full)
        if len(body) < 80 or not synopsis:
            continue
        seen = by_section[section]
        key = re.sub(r"\W+", " ", body.lower())
        # One item per distinct description: the alphabetically first package keeps it.
        if key not in seen or name < seen[key]["package"]:
            seen[key] = {"topic": section, "prompt": synopsis, "response": body, "package": name,
                         "version": p.get("Version", "")}
    items = []
    for section in DEBIAN_SECTIONS:
        chosen = sorted(by_section[section].values(), key=lambda r: _pick(r["package"]))[:per_topic]
        items.extend(sorted(chosen, key=lambda r: r["package"]))
    header = {"source": "debian package descriptions",
              "command": "apt-cache dumpavail (Section, Version, Description-md5) + Translation-en lists",
              "release": _release(),
              "grouped_by": "Section", "built": datetime.now(UTC).date().isoformat(),
              "per_topic": per_topic, "sections": list(DEBIAN_SECTIONS)}
    return header, items


def _package_version(name: str) -> str:
    out = subprocess.run(["dpkg-query", "-W", "-f=${Version}", name], capture_output=True, text=True)
    return out.stdout.strip()


def parse_wordnet_line(line: str) -> tuple[str, int, list[str], str] | None:
    """One data.noun line: offset lex_filenum ss_type w_cnt (word lex_id)... | gloss."""
    if line.startswith("  ") or "|" not in line:
        return None  # the licence header
    head, _, gloss = line.partition("|")
    parts = head.split()
    offset, lexfile, count = parts[0], int(parts[1]), int(parts[3], 16)
    words = [parts[4 + 2 * i].replace("_", " ") for i in range(count)]
    words = [re.sub(r"\([a-z]+\)$", "", w) for w in words]  # adjective markers like (a)
    return offset, lexfile, words, gloss.strip()


def build_wordnet(per_topic: int, path: Path = Path("/usr/share/wordnet/data.noun")) -> tuple[dict, list[dict]]:
    by_topic: dict[str, list[dict]] = defaultdict(list)
    for line in path.read_text(encoding="latin-1").splitlines():
        parsed = parse_wordnet_line(line)
        if parsed is None or parsed[1] not in LEXNAMES:
            continue
        offset, lexfile, words, gloss = parsed
        if len(gloss) < 20:
            continue
        by_topic[LEXNAMES[lexfile]].append({"topic": LEXNAMES[lexfile], "prompt": ", ".join(words),
                                            "response": gloss, "synset": f"{offset}-n"})
    items = []
    for topic in LEXNAMES.values():
        chosen = sorted(by_topic[topic], key=lambda r: _pick(r["synset"]))[:per_topic]
        items.extend(sorted(chosen, key=lambda r: r["synset"]))
    header = {"source": "WordNet 3.0 noun synsets", "package": "wordnet-base",
              "package_version": _package_version("wordnet-base"), "file": str(path), "release": _release(),
              "grouped_by": "lexicographer file", "built": datetime.now(UTC).date().isoformat(),
              "per_topic": per_topic, "topics": list(LEXNAMES.values())}
    return header, items


def write(name: str, header: dict, items: list[dict]) -> Path:
    DATA.mkdir(exist_ok=True)
    path = DATA / f"{name}.jsonl.gz"
    # mtime=0: the same corpus compresses to the same bytes.
    with gzip.GzipFile(path, "wb", mtime=0) as f:
        f.write((json.dumps({"header": header}) + "\n").encode())
        for item in items:
            f.write((json.dumps(item, ensure_ascii=False) + "\n").encode())
    return path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--per-topic", type=int, default=800)
    args = parser.parse_args()
    for name, builder in (("debian", build_debian), ("wordnet", build_wordnet)):
        header, items = builder(args.per_topic)
        path = write(name, header, items)
        counts = defaultdict(int)
        for item in items:
            counts[item["topic"]] += 1
        print(f"{path}: {len(items)} items, {path.stat().st_size / 1e6:.2f} MB; {dict(counts)}")


if __name__ == "__main__":
    main()
