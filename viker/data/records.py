"""The record model that every method, metric and report reads.

Loaders turn benchmark rows (MLLMU-Bench parquet, CLEAR parquet, a user's own
profile list) into these records; nothing downstream reads a raw row.

Images are kept as encoded bytes (PNG or JPEG) so that records stay cheap to
copy and hash; `decode_image` turns them into an RGB `PIL.Image` when a model
needs pixels.
"""

from __future__ import annotations

import enum
import hashlib
import io
from dataclasses import dataclass, field

from PIL import Image


class Modality(str, enum.Enum):
    """Whether a question is asked with the person's image or names the person in text."""

    IMAGE_TEXT = "image_text"
    TEXT = "text"


class SetName(str, enum.Enum):
    """Evaluation sets of MLLMU-Bench, in the benchmark's own terms."""

    FORGET = "forget"  # people to forget, training portraits and questions (lower is better)
    TEST = "test"  # the same people, new portraits and paraphrased questions (lower is better)
    RETAIN = "retain"  # fictitious people to keep (higher is better)
    PUBLIC = "public"  # public figures the model must keep, MLLMU-Bench's celebrity set (higher is better)


@dataclass(frozen=True)
class QA:
    """One training question about a person, with the fact span that the answer carries.

    `fact` is a substring of `answer` (the name, the city, the date); None when no
    span could be identified, in which case fact-level metrics skip the pair.
    """

    question: str
    answer: str
    fact: str | None = None


@dataclass
class Profile:
    """A person: portrait, optional test portraits, name and training questions."""

    id: str
    image: bytes | None
    qa: list[QA]
    name: str | None = None
    test_images: list[bytes] = field(default_factory=list)
    public: bool = False  # a public figure (MLLMU-Bench's celebrity set) rather than a fictitious person
    biography: dict | None = None


@dataclass(frozen=True)
class Sample:
    """One training or unlearning example: (image, question, answer).

    `image` is None for a text-only question, which names the person instead.
    """

    id: str
    profile_id: str
    question: str
    answer: str
    image: bytes | None = None
    fact: str | None = None


@dataclass(frozen=True)
class MultipleChoice:
    """A multiple-choice question; `options` maps a letter ("A".."D") to its text and `key` is the right letter."""

    id: str
    profile_id: str
    question: str
    options: dict[str, str]
    key: str
    modality: Modality
    image: bytes | None = None


@dataclass(frozen=True)
class Cloze:
    """A fill-in-the-blank statement; `text` holds the blank written `__` and `answer` fills it."""

    id: str
    profile_id: str
    text: str
    answer: str
    modality: Modality
    image: bytes | None = None


@dataclass(frozen=True)
class Generation:
    """A free-generation question scored against `answer`; `fact` is the gold fact span inside it."""

    id: str
    profile_id: str
    question: str
    answer: str
    modality: Modality
    image: bytes | None = None
    fact: str | None = None


@dataclass(frozen=True)
class Caption:
    """A CLEAR caption item: the true caption, its paraphrase and perturbed (false) captions.

    `name` and `perturbed_names` serve CLEAR's face-recognition task, which asks
    for the person's name among perturbed names.
    """

    id: str
    profile_id: str
    question: str
    caption: str
    image: bytes | None
    name: str | None = None
    paraphrase: str | None = None
    perturbed: tuple[str, ...] = ()
    perturbed_names: tuple[str, ...] = ()


EvalItem = MultipleChoice | Cloze | Generation | Caption


@dataclass
class EvalSet:
    """The evaluation items of one set (forget, test, retain or public)."""

    name: SetName
    multiple_choice: list[MultipleChoice] = field(default_factory=list)
    cloze: list[Cloze] = field(default_factory=list)
    generation: list[Generation] = field(default_factory=list)
    captions: list[Caption] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.multiple_choice) + len(self.cloze) + len(self.generation) + len(self.captions)


@dataclass
class Benchmark:
    """Profiles, the chosen forget/retain split, evaluation sets and the reference-image pool.

    `forget_ids` and `retain_ids` are disjoint sets of fictitious people; public
    figures (`public_ids`) are trained by the vanilla model and never forgotten.
    Holdout people (`holdout_ids`) have profiles but are in no training split,
    so they serve as non-members in membership inference.
    `reference_pool` maps a pool kind ("faces", "nonperson", "noise", "blank") to
    images of nobody in the benchmark, for ViKeR's visual guidance.
    """

    name: str
    profiles: dict[str, Profile]
    forget_ids: list[str]
    retain_ids: list[str]
    public_ids: list[str] = field(default_factory=list)
    eval_sets: dict[SetName, EvalSet] = field(default_factory=dict)
    reference_pool: dict[str, list[bytes]] = field(default_factory=dict)
    source: str = ""  # where it was loaded from, for reports
    holdout_ids: list[str] = field(default_factory=list)  # fictitious people in no training split, for membership inference

    def samples(self, ids: list[str]) -> list[Sample]:
        """Return the training samples of the given people, each asked with the person's portrait."""
        out = []
        for pid in ids:
            profile = self.profiles[pid]
            for i, qa in enumerate(profile.qa):
                out.append(Sample(f"{pid}/{i}", pid, qa.question, qa.answer, profile.image, qa.fact))
        return out

    def forget_samples(self) -> list[Sample]:
        return self.samples(self.forget_ids)

    def retain_samples(self) -> list[Sample]:
        return self.samples(self.retain_ids)

    def train_samples(self, include_forget: bool = True) -> list[Sample]:
        """Return the vanilla model's training data (`include_forget=True`) or the oracle's (False)."""
        ids = (self.forget_ids if include_forget else []) + self.retain_ids + self.public_ids
        return self.samples(ids)

    def fingerprint(self) -> str:
        """Return a hash of the profiles, split and images, used as a cache key."""
        h = hashlib.sha256()
        for pid in sorted(self.profiles):
            p = self.profiles[pid]
            h.update(pid.encode())
            h.update(hashlib.sha256(p.image or b"").digest())
            for qa in p.qa:
                h.update(f"{qa.question}\x00{qa.answer}\x00{qa.fact}".encode())
        h.update(("forget:" + ",".join(sorted(self.forget_ids))).encode())
        h.update(("public:" + ",".join(sorted(self.public_ids))).encode())
        return h.hexdigest()[:16]


def decode_image(data: bytes, source: str = "image") -> Image.Image:
    """Decode PNG/JPEG bytes into an RGB image; `source` names the file or row in the error."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            return img.convert("RGB")
    except Exception as err:  # PIL raises several unrelated types for bad bytes
        raise ValueError(
            f"{source}: the image bytes could not be decoded ({err}). "
            "Replace the image with a valid PNG or JPEG file."
        ) from err


def encode_png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()
