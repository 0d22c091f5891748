"""Model licenses: what the user must read before a download, and what they must honour after.

The text comes from the repo's license file (``LICENSE``, ``LICENSE.txt``,
``*TERMS*``, ``USE_POLICY``...) when it can be read, and from the model card's
front matter (``license``, ``license_name``, ``license_link``,
``extra_gated_prompt``) otherwise. The acceptance is recorded against the sha256
of exactly the text shown, so a changed license is asked for again.
"""

from __future__ import annotations

import hashlib
import html
import re
from dataclasses import dataclass, field
from html.parser import HTMLParser

from app.errors import HubError
from app.models.hub import HubClient, RepoDetails


@dataclass(frozen=True)
class KnownLicense:
    name: str
    url: str
    permissive: bool
    conditions: tuple[str, ...] = ()


_LLAMA_CONDITIONS = (
    "Display \"Built with Llama\" in any product or service you distribute that uses the model.",
    "Follow Meta's Acceptable Use Policy: https://www.llama.com/llama3/use-policy",
    "Keep a copy of the license with any copy of the model you pass on.",
    "Services with more than 700 million monthly users need a separate license from Meta.",
)

KNOWN_LICENSES: dict[str, KnownLicense] = {
    "llama2": KnownLicense("Llama 2 Community License", "https://ai.meta.com/llama/license/", False,
                           _LLAMA_CONDITIONS),
    "llama3": KnownLicense("Meta Llama 3 Community License", "https://www.llama.com/llama3/license/", False,
                           _LLAMA_CONDITIONS),
    "llama3.1": KnownLicense("Llama 3.1 Community License", "https://www.llama.com/llama3_1/license/", False,
                             _LLAMA_CONDITIONS),
    "llama3.2": KnownLicense("Llama 3.2 Community License", "https://www.llama.com/llama3_2/license/", False,
                             _LLAMA_CONDITIONS),
    "llama3.3": KnownLicense("Llama 3.3 Community License", "https://www.llama.com/llama3_3/license/", False,
                             _LLAMA_CONDITIONS),
    "llama4": KnownLicense("Llama 4 Community License", "https://www.llama.com/llama4/license/", False,
                           _LLAMA_CONDITIONS),
    "gemma": KnownLicense("Gemma Terms of Use", "https://ai.google.dev/gemma/terms", False, (
        "Follow the Gemma Prohibited Use Policy: https://ai.google.dev/gemma/prohibited_use_policy",
        "Pass the Gemma Terms of Use on with any copy or derivative of the model you distribute.",
        "State clearly in a modified model that you modified it.",
    )),
    "apache-2.0": KnownLicense("Apache License 2.0", "https://www.apache.org/licenses/LICENSE-2.0", True, (
        "Keep the license and NOTICE file with copies you distribute.",
    )),
    "mit": KnownLicense("MIT License", "https://opensource.org/license/mit", True, (
        "Keep the copyright and license notice with copies you distribute.",
    )),
    "qwen": KnownLicense("Qwen License", "https://huggingface.co/Qwen", False, (
        "Services with more than 100 million monthly users need a separate license from Alibaba Cloud.",
    )),
    "cc-by-4.0": KnownLicense("Creative Commons Attribution 4.0", "https://creativecommons.org/licenses/by/4.0/",
                              True, ("Credit the authors.",)),
    "cc-by-nc-4.0": KnownLicense("Creative Commons Attribution-NonCommercial 4.0",
                                 "https://creativecommons.org/licenses/by-nc/4.0/", False,
                                 ("Non-commercial use only.", "Credit the authors.")),
}

_LICENSE_FILE_RE = re.compile(r"^(licen[cs]e|.*terms.*|use_policy|notice)(\.(txt|md|html?))?$", re.IGNORECASE)


@dataclass(frozen=True)
class LicenseInfo:
    repo_id: str
    license_id: str  # the card's license id ("llama3.2", "gemma", "apache-2.0", "other", "unknown")
    name: str
    text: str
    source: str  # the file it was read from, or "model card"
    url: str | None
    gated: bool
    gated_prompt: str | None = None
    conditions: tuple[str, ...] = field(default_factory=tuple)
    permissive: bool = False
    note: str | None = None  # e.g. "the full text is readable after signing in"

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()

    @property
    def needs_attribution(self) -> bool:
        return self.license_id.startswith("llama")


class _TextExtractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style", "head"):
            self._skip += 1
        elif tag in ("p", "br", "li", "h1", "h2", "h3", "h4", "tr", "div", "section"):
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style", "head") and self._skip:
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)


def html_to_text(markup: str) -> str:
    """Readable text of a license web page (its ``<main>`` or ``<article>`` when it has one)."""
    for tag in ("article", "main"):
        start = re.search(rf"<{tag}\b[^>]*>", markup, re.IGNORECASE)
        end = markup.lower().rfind(f"</{tag}>")
        if start and end > start.end():
            markup = markup[start.end():end]
            break
    parser = _TextExtractor()
    parser.feed(markup)
    text = html.unescape("".join(parser.parts))
    lines = [re.sub(r"[ \t\r\f\v]+", " ", line).strip() for line in text.splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def license_files(details: RepoDetails) -> list[str]:
    names = [f.name for f in details.files if "/" not in f.name and _LICENSE_FILE_RE.match(f.name)]
    # LICENSE first, then terms, then policies
    return sorted(names, key=lambda n: (not n.lower().startswith("licen"), "polic" in n.lower(), n))


def describe(details: RepoDetails, client: HubClient | None = None) -> LicenseInfo:
    """The license of a repo, with its full text when the hub lets us read it."""
    card = details.card
    license_id = str(card.get("license") or "unknown").lower()
    known = KNOWN_LICENSES.get(license_id)
    name = str(card.get("license_name") or (known.name if known else license_id))
    url = str(card.get("license_link") or (known.url if known else "")) or None
    if url and not url.startswith("http") and client is not None:
        url = f"{client.endpoint}/{details.repo_id}/blob/main/{url.lstrip('/')}"
    prompt = card.get("extra_gated_prompt")
    gated_prompt = str(prompt).strip() if prompt else None
    text = ""
    source = "model card"
    note = None
    if client is not None:
        for filename in license_files(details):
            try:
                raw = client.fetch_text(details.repo_id, filename, details.commit)
            except HubError as exc:
                if exc.kind in ("not_signed_in", "license_not_accepted", "fine_grained"):
                    note = f"The full license file ({filename}) can be read on the Hub after signing in."
                    continue
                raise
            text = html_to_text(raw) if filename.lower().endswith((".html", ".htm")) else raw.strip()
            source = filename
            break
    if not text:
        pieces = [f"License: {name}"]
        if url:
            pieces.append(f"Full text: {url}")
        if gated_prompt:
            pieces.append(gated_prompt)
        text = "\n\n".join(pieces)
    return LicenseInfo(
        repo_id=details.repo_id,
        license_id=license_id,
        name=name,
        text=text,
        source=source,
        url=url,
        gated=details.gated or gated_prompt is not None,
        gated_prompt=gated_prompt,
        conditions=known.conditions if known else (),
        permissive=bool(known and known.permissive),
        note=note,
    )
