"""XQuAD question -> paragraph retrieval, monolingual and cross-lingual, as mteb tasks.

XQuAD (``multilingual/xquad/xquad.XX.json``, SQuAD v1.1 format) holds the same 240
paragraphs and 1,190 questions in 12 languages, with identical question ids across
languages. A question's relevant document is the paragraph it was asked about (gain 1).
Paragraph ids are ``"{article}-{paragraph}"`` positions, identical across languages.

- ``xquad``: one subset per language; queries and paragraphs in that language.
- ``xquad-crosslingual``: one subset ``XX-en`` per non-English language; queries in XX,
  paragraphs in English (the usual cross-lingual search direction: ask in your language,
  find English sources).
"""

from __future__ import annotations

import json
from pathlib import Path

from embedforge.data.beir import Document
from embedforge.eval.sampling import retrieval_subset
from embedforge.eval.tasks.limits import TaskLimits
from embedforge.eval.tasks.mteb_format import LocalRetrieval, local_metadata, retrieval_split
from embedforge.paths import shared_data_dir

XQUAD_INSTRUCTION = "Given a question, retrieve Wikipedia passages that answer the question"
XQUAD_LANGUAGES = {
    "ar": "arb-Arab", "de": "deu-Latn", "el": "ell-Grek", "en": "eng-Latn", "es": "spa-Latn", "hi": "hin-Deva",
    "ro": "ron-Latn", "ru": "rus-Cyrl", "th": "tha-Thai", "tr": "tur-Latn", "vi": "vie-Latn", "zh": "cmn-Hans",
}  # fmt: skip


def read_xquad(path: Path) -> tuple[dict[str, Document], dict[str, str], dict[str, dict[str, int]]]:
    """Paragraphs, questions and ``{question: {paragraph: 1}}`` from one XQuAD file."""
    try:
        articles = json.loads(path.read_text(encoding="utf-8"))["data"]
    except (json.JSONDecodeError, KeyError) as error:
        raise ValueError(f"{path}: not a SQuAD v1.1 file ({error})") from None
    corpus, queries, qrels = {}, {}, {}
    for article_index, article in enumerate(articles):
        for paragraph_index, paragraph in enumerate(article["paragraphs"]):
            doc_id = f"{article_index}-{paragraph_index}"
            corpus[doc_id] = Document(id=doc_id, title="", text=paragraph["context"])
            for question in paragraph["qas"]:
                queries[question["id"]] = question["question"]
                qrels[question["id"]] = {doc_id: 1}
    return corpus, queries, qrels


def xquad_file(language: str) -> Path:
    return shared_data_dir() / "multilingual" / "xquad" / f"xquad.{language}.json"


def selected(languages: list[str], limits: TaskLimits) -> list[str]:
    if limits.languages is None:
        return languages
    unknown = sorted(set(limits.languages) - set(XQUAD_LANGUAGES))
    if unknown:
        raise ValueError(f"XQuAD has no language(s) {unknown}; it has {sorted(XQUAD_LANGUAGES)}")
    return [language for language in languages if language in limits.languages]


class XQuADRetrieval(LocalRetrieval):
    metadata = local_metadata(
        "xquad",
        "Retrieval",
        "XQuAD question -> paragraph retrieval within each of 12 languages (240 paragraphs, 1,190 questions).",
        dataset="shared-data/multilingual/xquad",
        revision="7d30520",
        instruction=XQUAD_INSTRUCTION,
        languages={language: [script] for language, script in XQUAD_LANGUAGES.items()},
        reference="https://github.com/google-deepmind/xquad",
        license="cc-by-sa-4.0",
    )

    def __init__(self, limits: TaskLimits | None = None, **kwargs):
        super().__init__(**kwargs)
        self.limits = limits or TaskLimits()
        self.filter_languages(None, hf_subsets=selected(list(XQUAD_LANGUAGES), self.limits))

    def load_data(self, num_proc: int | None = None, **kwargs) -> None:
        if self.data_loaded:
            return
        self.dataset = {}
        for language in self.hf_subsets:
            corpus, queries, qrels = retrieval_subset(
                *read_xquad(xquad_file(language)), max_queries=self.limits.max_queries, max_corpus_docs=self.limits.max_corpus_docs
            )
            self.dataset[language] = {"test": retrieval_split(corpus, queries, qrels)}
        self.data_loaded = True


class XQuADCrossLingualRetrieval(LocalRetrieval):
    metadata = local_metadata(
        "xquad-crosslingual",
        "Retrieval",
        "XQuAD questions in 11 languages -> English paragraphs.",
        dataset="shared-data/multilingual/xquad",
        revision="7d30520",
        instruction=XQUAD_INSTRUCTION,
        languages={f"{language}-en": [script, XQUAD_LANGUAGES["en"]] for language, script in XQUAD_LANGUAGES.items() if language != "en"},
        reference="https://github.com/google-deepmind/xquad",
        license="cc-by-sa-4.0",
    )

    def __init__(self, limits: TaskLimits | None = None, **kwargs):
        super().__init__(**kwargs)
        self.limits = limits or TaskLimits()
        languages = selected([language for language in XQUAD_LANGUAGES if language != "en"], self.limits)
        self.filter_languages(None, hf_subsets=[f"{language}-en" for language in languages])

    def load_data(self, num_proc: int | None = None, **kwargs) -> None:
        if self.data_loaded:
            return
        english_corpus, _, _ = read_xquad(xquad_file("en"))
        self.dataset = {}
        for subset in self.hf_subsets:
            _, queries, qrels = read_xquad(xquad_file(subset.split("-")[0]))
            corpus, queries, qrels = retrieval_subset(
                english_corpus, queries, qrels, max_queries=self.limits.max_queries, max_corpus_docs=self.limits.max_corpus_docs
            )
            self.dataset[subset] = {"test": retrieval_split(corpus, queries, qrels)}
        self.data_loaded = True
