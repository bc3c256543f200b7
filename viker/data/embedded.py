"""A small fictitious benchmark, generated offline in seconds, in the MLLMU-Bench and CLEAR layouts.

`build_embedded` draws `n_people` fictitious people and `n_public` stand-ins
for MLLMU-Bench's celebrity set. Each person has a drawn portrait, test
portraits of the same face under a new pose, light and crop, a name and a
biography of ten facts. The facts come from shared lists of 12 to 16 values,
so a model that guesses is right about once in 14 tries.

The output folder contains:

- the MLLMU-Bench parquet configs (`Full_Set`, `Test_Set`, `Retain_Set`,
  `forget_5/10/15`, `retain_95/90/85`, `ft_Data`, `baseline_train_split/*`),
  as described in `viker.data.mllmu`;
- `reference_pool/{faces,nonperson,noise,blank}/*.png`: images of nobody in
  the benchmark, for ViKeR's reference images;
- `clear/`: the same people in the CLEAR layout, as described in `viker.data.clear`;
- `Holdout_Set` (only when `n_holdout` > 0): fictitious people in the
  `Full_Set` schema who are in no training split, as non-members for
  membership inference.

Every file is a function of the arguments alone, so a rerun with the same seed
writes the same bytes.
"""

from __future__ import annotations

import json
import random
import shutil
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from viker.data import portraits
from viker.data.clear import CLEAR_FORGET_PERCENTS, CLEAR_SCHEMAS
from viker.data.derive import name_in_text
from viker.data.errors import DataError
from viker.data.mllmu import FORGET_PERCENTS, HOLDOUT_CONFIG, MLLMU_SCHEMAS, SHARD_NAME
from viker.data.records import encode_png

FIRST_NAMES = [
    "Amelia", "Bruno", "Chiara", "Dmitri", "Elena", "Farid", "Greta", "Hugo", "Ines", "Jonas",
    "Keiko", "Lars", "Mina", "Nikolai", "Olga", "Pablo", "Quinn", "Rosa", "Stefan", "Tamsin",
    "Umar", "Vera", "Wim", "Xenia", "Yusuf", "Zofia", "Anouk", "Bastian", "Celine", "Dario",
]
LAST_NAMES = [
    "Kuznetsov", "Almeida", "Brandt", "Castellano", "Dubois", "Eriksen", "Fontaine", "Gallagher",
    "Horvath", "Ivanova", "Jansen", "Kowalski", "Lindqvist", "Moreau", "Novak", "Okafor", "Petrov",
    "Quispe", "Rossi", "Schneider", "Tanaka", "Urquhart", "Vasquez", "Weber", "Yilmaz", "Zeller",
    "Abbott", "Bianchi", "Costa", "Delgado",
]
CITIES = [
    "Riga", "Oslo", "Lima", "Perth", "Porto", "Quito", "Seoul", "Turin", "Dakar", "Hanoi",
    "Lyon", "Cork", "Graz", "Kyoto", "Tunis", "Leeds",
]
SCENES = [
    "smiling in a park", "reading in a library", "standing on a beach", "walking down a street",
    "sitting in a cafe", "posing in a studio", "laughing at a party", "hiking on a trail",
]


@dataclass(frozen=True)
class FactSpec:
    """One biography fact and the sentences that ask for it and state it.

    `answer`, `statement` and `test_statement` hold `{v}` for the value; the
    `text_*` forms hold `{name}` in place of "this person".
    """

    key: str
    values: tuple[str, ...]
    question: str
    answer: str
    test_question: str
    test_statement: str
    text_question: str | None = None  # None: no text-only form (the name question)


FACTS = [
    FactSpec("name", (), "What is the name of this person?", "This person's name is {v}.",
             "Who is the person in this image?", "The person shown here is called {v}."),
    FactSpec("birthplace", tuple(CITIES), "Where was this person born?", "This person was born in {v}.",
             "In which city was this person born?", "The birthplace of this person is {v}.",
             "Where was {name} born?"),
    FactSpec("profession", ("baker", "pilot", "nurse", "builder", "chemist", "farmer", "lawyer", "painter",
                            "dentist", "librarian", "journalist", "plumber", "teacher", "surgeon", "tailor", "sailor"),
             "What is this person's job?", "This person works as a {v}.",
             "What does this person do for a living?", "The job of this person is {v}.",
             "What is {name}'s job?"),
    FactSpec("hobby", ("painting", "hiking", "chess", "gardening", "fishing", "cycling", "knitting", "pottery",
                       "surfing", "baking", "birdwatching", "climbing", "dancing", "photography", "skiing"),
             "What hobby does this person enjoy?", "This person enjoys {v}.",
             "Which hobby does this person like?", "The favourite hobby of this person is {v}.",
             "What hobby does {name} enjoy?"),
    FactSpec("pet", ("cat", "dog", "parrot", "rabbit", "hamster", "turtle", "goldfish", "lizard", "ferret",
                     "snake", "horse", "goat", "pig", "duck"),
             "What pet does this person have?", "This person has a pet {v}.",
             "Which animal does this person keep as a pet?", "The pet of this person is a {v}.",
             "What pet does {name} have?"),
    FactSpec("food", ("sushi", "pizza", "ramen", "tacos", "paella", "curry", "dumplings", "lasagne", "falafel",
                      "pancakes", "risotto", "goulash", "burritos", "pho"),
             "What is this person's favourite food?", "This person's favourite food is {v}.",
             "Which food does this person like best?", "The food this person likes best is {v}.",
             "What is {name}'s favourite food?"),
    FactSpec("education", ("Oxford", "Harvard", "Yale", "Stanford", "MIT", "Princeton", "Cambridge", "ETH Zurich",
                           "the Sorbonne", "McGill", "Uppsala", "Bologna", "Heidelberg", "Leiden"),
             "Where did this person study?", "This person studied at {v}.",
             "At which university did this person study?", "The university of this person is {v}.",
             "Where did {name} study?"),
    FactSpec("residence", tuple(CITIES), "Where does this person live?", "This person lives in {v}.",
             "In which city does this person live now?", "The home city of this person is {v}.",
             "Where does {name} live?"),
    FactSpec("birth_year", tuple(str(y) for y in range(1960, 2000, 3)),
             "In what year was this person born?", "This person's birth year is {v}.",
             "Which year was this person born in?", "The year of birth of this person is {v}.",
             "In what year was {name} born?"),
    FactSpec("sport", ("tennis", "golf", "soccer", "rugby", "cricket", "hockey", "volleyball", "badminton",
                       "basketball", "baseball", "squash", "handball"),
             "What sport does this person play?", "This person plays {v}.",
             "Which sport does this person take part in?", "The sport of this person is {v}.",
             "What sport does {name} play?"),
    FactSpec("colour", ("red", "blue", "green", "yellow", "purple", "orange", "pink", "black", "white", "grey",
                        "teal", "brown"),
             "What is this person's favourite colour?", "This person's favourite colour is {v}.",
             "Which colour does this person like best?", "The colour this person likes best is {v}.",
             "What is {name}'s favourite colour?"),
]
FACT_BY_KEY = {spec.key: spec for spec in FACTS}
LETTERS = "ABCD"


@dataclass
class Person:
    id: str
    name: str
    facts: dict[str, str]
    face: portraits.Face
    public: bool


def round_half_up(x: float) -> int:
    return int(x + 0.5)


def split_size(percent: int, n: int) -> int:
    """Return the number of people in a `percent` % split of `n`, at least one."""
    return max(1, round_half_up(percent * n / 100))


def build_embedded(
    out_dir: str | Path,
    *,
    seed: int = 0,
    n_people: int = 50,
    n_public: int = 10,
    image_size: int = 48,
    n_reference_faces: int = 24,
    qa_per_person: int = 6,
    test_images_per_person: int = 2,
    n_reference_other: int = 8,
    n_holdout: int = 0,
) -> Path:
    """Generate the embedded benchmark in `out_dir` and return that path.

    Args:
        out_dir: folder to write; its previous generated configs are replaced.
        seed: seed of every random choice (faces, names, facts, splits, options).
        n_people: fictitious people, split into forget and retain sets.
        n_public: public figures (MLLMU-Bench's `Retain_Set`), never forgotten.
        image_size: side of every image in pixels.
        n_reference_faces: faces of people outside the benchmark in `reference_pool/faces`.
        qa_per_person: training questions per person, 1 to 11; the name comes first.
        test_images_per_person: new views of each face in `Test_Set`.
        n_reference_other: images in each of `reference_pool/nonperson` and `reference_pool/noise`.
        n_holdout: fictitious people written to `Holdout_Set` only. They are drawn
            after everything else from a generator of their own, so the other
            files are the same bytes for any `n_holdout`.

    Raises:
        DataError: if a count is out of range.
    """
    _check_arguments(n_people, n_public, image_size, qa_per_person, test_images_per_person, n_reference_faces)
    if n_holdout < 0 or n_people + n_public + n_holdout > len(FIRST_NAMES) * len(LAST_NAMES):
        raise DataError(f"build_embedded: invalid n_holdout={n_holdout!r}; use 0 or more, with fewer than "
                        f"{len(FIRST_NAMES) * len(LAST_NAMES)} people in all.")
    out = Path(out_dir)
    rng = random.Random(seed)

    n_faces = n_people + n_public + n_reference_faces
    faces = portraits.draw_faces(n_faces, rng)
    people = _draw_people(n_people, n_public, faces, rng)
    fact_keys = [spec.key for spec in FACTS[:qa_per_person]]
    order = [p.id for p in people if not p.public]
    rng.shuffle(order)  # the forget sets are prefixes of this order, so smaller sets nest in larger ones

    images = {}
    test_images = {}
    for person in people:
        canvas = portraits.render_face(person.face, image_size)
        images[person.id] = encode_png(portraits.downsample(canvas, image_size))
        test_images[person.id] = [
            encode_png(portraits.vary_view(canvas, person.face, image_size, rng)) for _ in range(test_images_per_person)
        ]

    for sub in ("Full_Set", "Test_Set", "Retain_Set", "ft_Data", "baseline_train_split", "reference_pool", "clear",
                HOLDOUT_CONFIG):
        shutil.rmtree(out / sub, ignore_errors=True)
    _write_mllmu(out, people, fact_keys, images, test_images, order, rng)
    _write_reference_pool(out / "reference_pool", faces[n_people + n_public:], image_size, n_reference_other, seed)
    _write_clear(out / "clear", people, images, test_images, order, rng)
    if n_holdout:
        _write_holdout(out / HOLDOUT_CONFIG, people, faces, n_holdout, fact_keys, image_size, seed)
    return out


def _check_arguments(n_people, n_public, image_size, qa_per_person, test_images_per_person, n_reference_faces) -> None:
    checks = [
        ("n_people", n_people, n_people >= 5, "use at least 5 so that distractors and splits exist"),
        ("n_public", n_public, n_public >= 0, "use 0 or more"),
        ("image_size", image_size, 16 <= image_size <= 1024, "use 16 to 1024 pixels"),
        ("qa_per_person", qa_per_person, 1 <= qa_per_person <= len(FACTS), f"use 1 to {len(FACTS)}"),
        ("test_images_per_person", test_images_per_person, test_images_per_person >= 1, "use 1 or more"),
        ("n_reference_faces", n_reference_faces, n_reference_faces >= 0, "use 0 or more"),
    ]
    for name, value, ok, fix in checks:
        if not ok:
            raise DataError(f"build_embedded: invalid {name}={value!r}; {fix}.")
    if n_people + n_public > len(FIRST_NAMES) * len(LAST_NAMES):
        raise DataError(
            f"build_embedded: {n_people + n_public} people exceed the {len(FIRST_NAMES) * len(LAST_NAMES)} "
            "unique names available; ask for fewer people."
        )


def _draw_people(n_people: int, n_public: int, faces: list[portraits.Face], rng: random.Random) -> list[Person]:
    all_names = [f"{first} {last}" for first in FIRST_NAMES for last in LAST_NAMES]
    names = rng.sample(all_names, n_people + n_public)
    people = []
    for i in range(n_people + n_public):
        facts = {"name": names[i]}
        for spec in FACTS[1:]:
            facts[spec.key] = rng.choice(spec.values)
        people.append(Person(f"{i + 1:03d}", names[i], facts, faces[i], public=i >= n_people))
    return people


def _image(data: bytes, path: str) -> dict:
    return {"bytes": data, "path": path}


def _options(answer: str, pool: list[str], rng: random.Random) -> tuple[dict[str, str], str]:
    """Return four lettered options (the answer and three distinct distractors from `pool`) and the answer's letter."""
    distractors = rng.sample(sorted({v for v in pool if v.lower() != answer.lower()}), 3)
    choices = distractors + [answer]
    rng.shuffle(choices)
    return dict(zip(LETTERS, choices)), LETTERS[choices.index(answer)]


def _value_pool(people: list[Person], person: Person, key: str) -> list[str]:
    """Return other people's values of `key`, topped up from the fact's value list when fewer than three differ."""
    pool = sorted({p.facts[key] for p in people if p.id != person.id and p.facts[key] != person.facts[key]})
    if len(pool) < 3:
        extra = FACT_BY_KEY[key].values or tuple(p.name for p in people)
        pool = sorted(set(pool) | {v for v in extra if v != person.facts[key]})
    return pool


def _eval_tasks(person: Person, people: list[Person], fact_keys: list[str], rng: random.Random, test: bool) -> dict:
    """Build the Classification, Generation and Mask tasks of one person (paraphrased when `test`)."""
    image_mc, text_mc, generation, mask = [], [], [], []
    for key in fact_keys:
        spec = FACT_BY_KEY[key]
        value = person.facts[key]
        question = spec.test_question if test else spec.question
        answer = spec.answer.format(v=value)
        statement = (spec.test_statement if test else spec.answer).format(v="__")
        pool = _value_pool(people, person, key)

        options, letter = _options(value, pool, rng)
        image_mc.append({"Question": question, "Options": options, "Correct_Answer": letter})
        generation.append({"Question": question, "Ground_Truth": answer, "Type": "Image_Textual"})
        mask.append({"Question": statement, "Ground_Truth": value, "Type": "Image_Textual"})
        if spec.text_question is None:
            continue

        text_question = name_in_text(question, person.name) if test else spec.text_question.format(name=person.name)
        options, letter = _options(value, pool, rng)
        text_mc.append({"Question": text_question, "Options": options, "Correct_Answer": letter})
        generation.append({"Question": text_question, "Ground_Truth": name_in_text(answer, person.name), "Type": "Pure_Text"})
        mask.append({"Question": name_in_text(statement, person.name), "Ground_Truth": value, "Type": "Pure_Text"})
    return {
        "Classification_Task": {"Image_Textual_Questions": image_mc, "Pure_Text_Questions": text_mc},
        "Generation_Task": generation,
        "Mask_Task": mask,
    }


def _biography(person: Person) -> str:
    return json.dumps({spec.key: person.facts[spec.key] for spec in FACTS}, sort_keys=True)


def _write_config(folder: Path, rows: list[dict], schema: pa.Schema) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), folder / SHARD_NAME)


def _write_mllmu(out, people, fact_keys, images, test_images, order, rng) -> None:
    full_rows, test_rows, public_rows, train_rows = [], [], [], []
    for person in people:
        row = {"image": _image(images[person.id], f"{person.id}.png"), "ID": person.id, "biography": _biography(person)}
        row.update(_eval_tasks(person, people, fact_keys, rng, test=False))
        (public_rows if person.public else full_rows).append(row)

        # `Fact` is an addition of ours to the real layout; loaders of real data derive the span instead.
        metadata = [
            {"ID": person.id, "Question": FACT_BY_KEY[k].question,
             "Answer": FACT_BY_KEY[k].answer.format(v=person.facts[k]), "Fact": person.facts[k]}
            for k in fact_keys
        ]
        train_rows.append({"image": row["image"], "ID": person.id, "metadata": json.dumps(metadata)})
        if person.public:
            continue

        test_row = {
            "images": [_image(img, f"{person.id}_pose{j}.png") for j, img in enumerate(test_images[person.id])],
            "ID": person.id,
            "biography": row["biography"],
        }
        test_row.update(_eval_tasks(person, people, fact_keys, rng, test=True))
        test_rows.append(test_row)

    _write_config(out / "Full_Set", full_rows, MLLMU_SCHEMAS["eval"])
    _write_config(out / "Retain_Set", public_rows, MLLMU_SCHEMAS["eval"])
    _write_config(out / "Test_Set", test_rows, MLLMU_SCHEMAS["test"])
    _write_config(out / "ft_Data", train_rows, MLLMU_SCHEMAS["train"])

    by_id = {row["ID"]: row for row in full_rows}
    train_by_id = {row["ID"]: row for row in train_rows}
    for percent in FORGET_PERCENTS:
        k = split_size(percent, len(order))
        forget, retain = sorted(order[:k]), sorted(order[k:])
        for config, ids in ((f"forget_{percent}", forget), (f"retain_{100 - percent}", retain)):
            _write_config(out / config, [by_id[i] for i in ids], MLLMU_SCHEMAS["eval"])
            _write_config(out / "baseline_train_split" / config, [train_by_id[i] for i in ids], MLLMU_SCHEMAS["train"])


def _write_reference_pool(folder: Path, faces, size: int, n_other: int, seed: int) -> None:
    rng = random.Random(seed + 1)
    kinds = {
        "faces": [portraits.downsample(portraits.render_face(face, size), size) for face in faces],
        "nonperson": [portraits.render_nonperson(i, size, rng) for i in range(n_other)],
        "noise": [portraits.render_noise(size, seed * 1000 + i) for i in range(n_other)],
        "blank": [portraits.render_blank(colour, size) for colour in portraits.BLANK_COLOURS],
    }
    for kind, imgs in kinds.items():
        (folder / kind).mkdir(parents=True, exist_ok=True)
        for i, img in enumerate(imgs):
            (folder / kind / f"{kind}_{i:03d}.png").write_bytes(encode_png(img))


def _caption(person: Person, scene: str) -> str:
    return f"{person.name}, a {person.facts['profession']} from {person.facts['birthplace']}, {scene}."


def _write_clear(folder: Path, people, images, test_images, order, rng) -> None:
    fictitious = [p for p in people if not p.public]
    public = [p for p in people if p.public]
    professions = FACT_BY_KEY["profession"].values
    rows_by_person = {}
    for person in fictitious:
        rows = []
        for j, img in enumerate([images[person.id]] + test_images[person.id]):
            scene = SCENES[rng.randrange(len(SCENES))]
            others = [p for p in fictitious if p.id != person.id]
            perturbed = []
            for other in rng.sample(others, 4):
                fake = Person(person.id, person.name, dict(person.facts, profession=rng.choice(professions),
                                                          birthplace=other.facts["birthplace"]), person.face, False)
                perturbed.append(_caption(fake, rng.choice(SCENES)))
            rows.append({
                "image": _image(img, f"{person.id}_{j}.png"),
                "caption": _caption(person, scene),
                "name": person.name,
                "paraphrased_caption": f"This photo shows {person.name}, who was born in {person.facts['birthplace']} "
                                       f"and works as a {person.facts['profession']}, {scene}.",
                "perturbed_captions": perturbed,
                "perturbed_names": [p.name for p in rng.sample(others, 4)],
            })
        rows_by_person[person.id] = rows

    def plain(rows):
        return [{k: r[k] for k in ("image", "caption", "name")} for r in rows]

    everyone = [r for p in fictitious for r in rows_by_person[p.id]]
    _write_config(folder / "full", plain(everyone), CLEAR_SCHEMAS["caption"])
    for percent in CLEAR_FORGET_PERCENTS:
        k = split_size(percent, len(order))
        forget, retain = sorted(order[:k]), sorted(order[k:])
        for config, ids in ((f"forget{percent:02d}", forget), (f"retain{100 - percent}", retain)):
            rows = [r for i in ids for r in rows_by_person[i]]
            _write_config(folder / config, plain(rows), CLEAR_SCHEMAS["caption"])
            _write_config(folder / f"{config}_perturbed", rows, CLEAR_SCHEMAS["perturbed"])

    face_rows, world_rows = [], []
    for person in public:
        names = [p.name for p in people if p.id != person.id]
        options = rng.sample(names, 3) + [person.name]
        rng.shuffle(options)
        face_rows.append({"image": _image(images[person.id], f"{person.id}.png"), "answer": person.name, "options": options})
        city_options = rng.sample([c for c in CITIES if c != person.facts["birthplace"]], 3) + [person.facts["birthplace"]]
        rng.shuffle(city_options)
        world_rows.append({
            "question": "Where was this person born?", "answer": person.facts["birthplace"],
            "image": _image(images[person.id], f"{person.id}.png"), "options": city_options,
        })
    _write_config(folder / "real_faces", face_rows, CLEAR_SCHEMAS["real_faces"])
    _write_config(folder / "real_world", world_rows, CLEAR_SCHEMAS["real_world"])


def _write_holdout(folder: Path, people, faces, n_holdout: int, fact_keys, image_size: int, seed: int) -> None:
    """Write `n_holdout` new people (new names and faces) in the `Full_Set` schema, with IDs after everyone else's."""
    rng = random.Random(f"{seed}:holdout")
    used = {p.name for p in people}
    names = rng.sample([f"{first} {last}" for first in FIRST_NAMES for last in LAST_NAMES if f"{first} {last}" not in used],
                       n_holdout)
    chosen: list[portraits.Face] = []
    for _ in range(1000 * n_holdout):
        if len(chosen) == n_holdout:
            break
        face = portraits.draw_faces(1, rng)[0]
        if all(face.distance(other) >= portraits.MIN_ATTRIBUTE_DISTANCE for other in faces + chosen):
            chosen.append(face)
    if len(chosen) < n_holdout:
        raise DataError(f"build_embedded: could not draw {n_holdout} holdout faces unlike the others; ask for fewer.")

    holdout = []
    for i, (name, face) in enumerate(zip(names, chosen)):
        facts = {"name": name} | {spec.key: rng.choice(spec.values) for spec in FACTS[1:]}
        holdout.append(Person(f"{len(people) + i + 1:03d}", name, facts, face, public=False))
    rows = []
    for person in holdout:
        image = encode_png(portraits.downsample(portraits.render_face(person.face, image_size), image_size))
        row = {"image": _image(image, f"{person.id}.png"), "ID": person.id, "biography": _biography(person)}
        row.update(_eval_tasks(person, people + holdout, fact_keys, rng, test=False))
        rows.append(row)
    _write_config(folder, rows, MLLMU_SCHEMAS["eval"])
