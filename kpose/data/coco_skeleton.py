"""A skeleton read from a COCO-format file: keypoint names and order, limbs, flip pairs and
OKS sigmas of its category, for data with keypoints of its own (animals, hands,
CrowdPose-14, ...). Recipes ask for it with ``skeleton: from-data`` or, with overrides,
``skeleton: {from: data, category: dog, flip_pairs: [[left_eye, right_eye], ...],
limbs: [[a, b], ...], sigmas: [...]}`` (keypoints by name or 0-based index).

What a real file can get wrong, and what happens:
* ``skeleton`` (the limbs) missing or empty: no limbs, with a note (drawing and bottom-up
  models need them: give ``limbs`` in the recipe). 0-based instead of COCO's 1-based: read
  as 0-based when an index 0 occurs, with a note. An index beyond the keypoints, or a limb
  naming an unknown keypoint: DataError naming the file, the field and the fix.
* Flip pairs are inferred from left/right naming in its common spellings (``left_eye`` /
  ``right_eye``, ``L_Eye`` / ``R_Eye``, ``LeftHand`` / ``RightHand``, ``lhip`` / ``rhip``,
  ``left_front_paw`` / ``right_front_paw``). A left keypoint without a right one is an
  error (a flip would teach it on the wrong side); names with no side at all give a
  skeleton without flip pairs, which trains without flip augmentation (said in a note).
* OKS sigmas: from the recipe, else DEFAULT_SIGMA for every keypoint, with a note saying so
  (the evaluation report names the sigmas it used).
* Several categories: the recipe's ``category`` picks one; categories that share the same
  keypoints (AP-10K's 54 species) are read together as one; otherwise an error lists them.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from kpose.data.images import DataError
from kpose.skeletons import COCO17, Skeleton

FROM_DATA = "from-data"
# The mean of COCO-17's published sigmas: a stated default for keypoints without their own.
DEFAULT_SIGMA = round(float(np.mean(COCO17.sigmas)), 4)
_LEFT = frozenset({"left", "l", "lft", "lt"})
_RIGHT = frozenset({"right", "r", "rgt", "rt"})


@dataclass(frozen=True)
class SkeletonRequest:
    """A recipe's ``skeleton: from-data`` (or its dict form): what to read and what to override."""

    category: str | None = None
    flip_pairs: tuple | None = None
    limbs: tuple | None = None
    sigmas: tuple | None = None


def skeleton_request(entry) -> SkeletonRequest | None:
    """The from-data request a recipe's skeleton entry makes, or None for a built-in name."""
    if entry == FROM_DATA:
        return SkeletonRequest()
    if isinstance(entry, SkeletonRequest):
        return entry
    if not isinstance(entry, dict) or ("from" not in entry and "keypoints" in entry):
        return None  # a built-in name or a full skeleton entry (Skeleton.to_dict)
    if entry.get("from") != "data":
        raise ValueError(f"recipe skeleton {entry!r}: a skeleton given as a mapping reads the data's own "
                         f"keypoints and needs 'from: data' (plus any of category, flip_pairs, limbs, "
                         f"sigmas); use a built-in name (coco17, mpii16, cmu18, crowdpose14) otherwise")
    unknown = set(entry) - {"from", "category", "flip_pairs", "limbs", "sigmas"}
    if unknown:
        raise ValueError(f"recipe skeleton: unknown keys {sorted(unknown)}; known: from, category, "
                         f"flip_pairs, limbs, sigmas")
    as_pairs = lambda v: None if v is None else tuple(tuple(p) for p in v)  # noqa: E731
    return SkeletonRequest(category=entry.get("category"), flip_pairs=as_pairs(entry.get("flip_pairs")),
                           limbs=as_pairs(entry.get("limbs")),
                           sigmas=None if entry.get("sigmas") is None else tuple(float(s) for s in entry["sigmas"]))


def _tokens(name: str) -> list[str]:
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", str(name))
    return [t for t in re.split(r"[_\-\s.]+", spaced.lower()) if t]


def _side(name: str) -> tuple[str | None, tuple[str, ...]]:
    """('left' | 'right' | None, the name's other words)."""
    toks = _tokens(name)
    sides = [i for i, t in enumerate(toks) if t in _LEFT | _RIGHT]
    if len(sides) != 1:
        return None, tuple(toks)
    i = sides[0]
    return ("left" if toks[i] in _LEFT else "right"), tuple(toks[:i] + toks[i + 1:])


def infer_flip_pairs(names) -> tuple[tuple[int, int], ...]:
    """(left, right) index pairs from left/right naming; ValueError for a side without its mirror."""
    names = list(names)
    sides = [_side(n) for n in names]
    # "lhip"/"rhip": a one-word name whose first letter is the side, when its mirror exists.
    words = {toks: i for i, (side, toks) in enumerate(sides) if side is None and len(toks) == 1}
    for toks, i in words.items():
        w = toks[0]
        if len(w) > 2 and w[0] in "lr" and ((("r" if w[0] == "l" else "l") + w[1:]),) in words:
            sides[i] = ("left" if w[0] == "l" else "right", (w[1:],))
    by_key: dict = {}
    for i, (side, key) in enumerate(sides):
        if side is not None:
            by_key.setdefault(key, {}).setdefault(side, []).append(i)
    pairs = []
    for key, found in by_key.items():
        left, right = found.get("left", []), found.get("right", [])
        if len(left) != 1 or len(right) != 1:
            lone = [names[i] for i in left + right]
            raise ValueError(f"keypoints {lone} have no unique left/right mirror by name; give the pairs "
                             f"(skeleton: {{from: data, flip_pairs: [[left_name, right_name], ...]}}) or "
                             f"train without flips (augment.flip: 0)")
        pairs.append((left[0], right[0]))
    return tuple(sorted(pairs))


def _index(value, names: list[str], where: str) -> int:
    if isinstance(value, str):
        if value not in names:
            raise DataError(f"{where}: keypoint {value!r} is not one of {names}")
        return names.index(value)
    i = int(value)
    if not 0 <= i < len(names):
        raise DataError(f"{where}: keypoint index {i} is outside 0..{len(names) - 1}")
    return i


def _index_pairs(pairs, names: list[str], where: str) -> tuple[tuple[int, int], ...]:
    return tuple((_index(a, names, where), _index(b, names, where)) for a, b in pairs)


def _file_limbs(raw, names: list[str], path: str, field: str, notes: list[str]) -> tuple:
    if not raw:
        notes.append(f"{path}: {field} is missing or empty: no limbs (drawing and bottom-up models need "
                     f"them; give skeleton: {{from: data, limbs: [[a, b], ...]}})")
        return ()
    if not all(isinstance(p, (list, tuple)) and len(p) == 2 for p in raw):
        raise DataError(f"{path}: field {field} must list pairs of keypoints, got {raw!r}. "
                        f"Fix: correct the file or give the limbs in the recipe (skeleton.limbs)")
    if all(isinstance(v, str) for p in raw for v in p):
        return _index_pairs(raw, names, f"{path}: {field}")
    flat = [int(v) for p in raw for v in p]
    k = len(names)
    base = 0 if min(flat) == 0 else 1
    if base == 0:
        notes.append(f"{path}: {field} uses index 0: read as 0-based (COCO's is 1-based)")
    if max(flat) - base >= k or min(flat) < 0:
        bad = sorted({v for v in flat if not 0 <= v - base < k})
        raise DataError(f"{path}: field {field} names keypoints {bad} ({'0' if base == 0 else '1'}-based) but "
                        f"the category has {k} keypoints {names}. Fix: correct the file's limbs or give them "
                        f"in the recipe (skeleton: {{from: data, limbs: [[name_a, name_b], ...]}})")
    return tuple((a - base, b - base) for a, b in (tuple(int(v) for v in p) for p in raw))


def pick_categories(path: str, categories: list[dict], request: SkeletonRequest) -> list[dict]:
    """The categories a from-data skeleton reads: the one named, the only one, or all that share
    one keypoint list."""
    with_kp = [c for c in categories if isinstance(c.get("keypoints"), list) and c["keypoints"]]
    if not with_kp:
        raise DataError(f"{path}: no category has a 'keypoints' list of names. Fix: add "
                        f"categories[].keypoints (the keypoint names in annotation order)")
    if request.category is not None:
        chosen = [c for c in with_kp if str(c.get("name")) == str(request.category) or c.get("id") == request.category]
        if not chosen:
            raise DataError(f"{path}: no category {request.category!r}; categories with keypoints: "
                            f"{[c.get('name') for c in with_kp]}")
        return chosen[:1]
    if all(c["keypoints"] == with_kp[0]["keypoints"] and c.get("skeleton") == with_kp[0].get("skeleton")
           for c in with_kp):
        return with_kp
    raise DataError(f"{path}: categories with different keypoints: "
                    f"{[(c.get('name'), len(c['keypoints'])) for c in with_kp]}. Fix: pick one in the recipe "
                    f"(skeleton: {{from: data, category: NAME}})")


def skeleton_from_categories(path: str, categories: list[dict], request: SkeletonRequest,
                             name: str) -> tuple[Skeleton, list[str]]:
    """(the skeleton of these categories with the request's overrides, notes to print once)."""
    notes: list[str] = []
    category = categories[0]
    names = [str(n) for n in category["keypoints"]]
    if len(set(names)) != len(names):
        raise DataError(f"{path}: categories[].keypoints repeats names {names}. Fix: give each keypoint "
                        f"its own name")
    if len(categories) > 1:
        notes.append(f"{path}: {len(categories)} categories share these {len(names)} keypoints "
                     f"({', '.join(str(c.get('name')) for c in categories[:5])}, ...): read together")
    if request.limbs is not None:
        limbs = _index_pairs(request.limbs, names, "recipe skeleton.limbs")
    else:
        limbs = _file_limbs(category.get("skeleton"), names, path, "categories[].skeleton", notes)
    unique = []
    for a, b in limbs:
        if a != b and (a, b) not in unique and (b, a) not in unique:
            unique.append((a, b))
    if len(unique) != len(limbs):
        notes.append(f"{path}: dropped {len(limbs) - len(unique)} repeated or self-joining limbs")
    if request.flip_pairs is not None:
        flips = _index_pairs(request.flip_pairs, names, "recipe skeleton.flip_pairs")
    else:
        try:
            flips = infer_flip_pairs(names)
        except ValueError as e:
            raise DataError(f"{path}: {e}") from None
        if not flips:
            notes.append(f"{path}: no left/right keypoint names: no flip pairs, so no flip augmentation "
                         f"(give skeleton: {{from: data, flip_pairs: [...]}} if the layout is symmetric)")
    if request.sigmas is not None:
        if len(request.sigmas) != len(names):
            raise ValueError(f"recipe skeleton.sigmas has {len(request.sigmas)} values for {len(names)} "
                             f"keypoints {names}")
        sigmas = tuple(request.sigmas)
    else:
        sigmas = (DEFAULT_SIGMA,) * len(names)
        notes.append(f"{path}: no OKS sigmas for these keypoints: using {DEFAULT_SIGMA} for each (COCO-17's "
                     f"mean); give skeleton: {{from: data, sigmas: [...]}} for meaningful OKS AP")
    skeleton = Skeleton(name=name, keypoints=tuple(names), flip_pairs=flips, limbs=tuple(unique),
                        sigmas=sigmas, extra={"source": path})
    return skeleton, notes


def disconnected_keypoints(skeleton: Skeleton) -> list[list[str]]:
    """Keypoint groups not joined to the largest group by any limb (empty when connected)."""
    parent = list(range(skeleton.num_keypoints))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for a, b in skeleton.limbs:
        parent[root(a)] = root(b)
    groups: dict[int, list[str]] = {}
    for i, n in enumerate(skeleton.keypoints):
        groups.setdefault(root(i), []).append(n)
    ordered = sorted(groups.values(), key=len, reverse=True)
    return ordered[1:]


def require_connected(skeleton: Skeleton) -> None:
    """Bottom-up grouping joins keypoints along limbs: they must connect every keypoint."""
    apart = disconnected_keypoints(skeleton)
    if apart:
        raise ValueError(f"skeleton {skeleton.name!r}: keypoints {apart} are joined to the rest by no limb, so "
                         f"PAF grouping cannot assemble them into people. Fix: add limbs that connect them "
                         f"(skeleton: {{from: data, limbs: [...]}}) or train a top-down model")
