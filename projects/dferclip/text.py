"""Class names and the LLM-written descriptions DFER-CLIP feeds its text encoder (official ``models/Text.py``).

Index = label. The 7-class set (DFEW, FERV39k) is the first 7 entries of the 11-class set (MAFW).
"""

from __future__ import annotations

CLASS_NAMES_11: tuple[str, ...] = (
    "happiness",
    "sadness",
    "neutral",
    "anger",
    "surprise",
    "disgust",
    "fear",
    "contempt",
    "anxiety",
    "helplessness",
    "disappointment",
)

DESCRIPTORS_11: tuple[str, ...] = (
    "a smiling mouth, raised cheeks, wrinkled eyes, and arched eyebrows.",
    "tears, a downward turned mouth, drooping upper eyelids, and a wrinkled forehead.",
    "relaxed facial muscles, a straight mouth, a smooth forehead, and unremarkable eyebrows.",
    "furrowed eyebrows, narrow eyes, tightened lips, and flared nostrils.",
    "widened eyes, an open mouth, raised eyebrows, and a frozen expression.",
    "a wrinkled nose, lowered eyebrows, a tightened mouth, and narrow eyes.",
    "raised eyebrows, parted lips, a furrowed brow, and a retracted chin.",
    "one side of its mouth raised, one eyebrow lower and one raised, narrowed eyes, and a raised chin.",
    "a tensed forehead, tightly pressed lips, pupil dilation, and tensed facial muscles.",
    "drooping eyebrows, a downward gaze, a downturned mouth, and lacking expression.",
    "a downturned mouth, lowered eyebrows, narrowed eyes, and a sighing face.",
)

TEXT_TYPES = ("class_descriptor", "class_names", "class_names_with_context")


def class_names(num_classes: int) -> list[str]:
    """The first ``num_classes`` (7 or 11) class names in label order."""
    if num_classes not in (7, 11):
        raise ValueError(f"DFER-CLIP has 7-class (DFEW, FERV39k) and 11-class (MAFW) label sets, not {num_classes}")
    return list(CLASS_NAMES_11[:num_classes])


def class_texts(num_classes: int, text_type: str = "class_descriptor") -> list[str]:
    """The text placed after the learnable contexts for each class.

    ``class_descriptor`` (the paper's default): the LLM description; ``class_names``: ``"happiness."``;
    ``class_names_with_context``: ``"an expression of happiness."``.
    """
    names = class_names(num_classes)
    if text_type == "class_descriptor":
        return list(DESCRIPTORS_11[:num_classes])
    if text_type == "class_names":
        return [f"{n}." for n in names]
    if text_type == "class_names_with_context":
        return [f"an expression of {n}." for n in names]
    raise ValueError(f"unknown text_type {text_type!r}; choose one of {TEXT_TYPES}")
