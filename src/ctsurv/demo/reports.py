"""Radiology reports written from a study's :class:`~ctsurv.demo.findings.Findings`.

Each of the six question topics is written by one function that returns the sentences it
adds (tagged with the report section they belong to) and the topic's gold answer, so the
gold answer is by construction the report's own wording.  Prose varies by synonyms,
sentence templates, units (mm or cm), abbreviations, optional station numbers and
omitted normal findings.

What carries image-only risk in the survival cohorts (emphysema and its extent, body
habitus and subcutaneous fat, a necrotic tumour core) is described only in the "pretrain"
style, in ordinary radiology words graded like the phenotype codes of
:mod:`ctsurv.demo.phenotypes`, so an encoder pre-trained on those reports can learn to
see it; the survival styles never write it (as INSPECT's short impressions do not).

Report styles: "pretrain" (general chest CT, long descriptive findings as in CT-RATE),
"lung" (lung cancer staging CT) and "pe" (CT pulmonary angiogram).
"""

from __future__ import annotations

import numpy as np

from .anatomy import LOBE_ABBREV, STATIONS
from .findings import Findings
from .gold import GoldAnswer, not_mentioned
from .phenotypes import CACHEXIA_FAT_MM, MODERATE_EMPHYSEMA, NECROTIC_TUMOR, OBESITY_FAT_MM, OVERWEIGHT_FAT_MM, RV_STRAIN, SEVERE_EMPHYSEMA, THIN_FAT_MM

# Sections in reading order.
_ORDER = ("history", "technique", "pe", "lungs", "airways", "pleura", "mediastinum", "vessels", "heart", "abdomen", "bones", "soft_tissues")


class _Writer:
    def __init__(self, rng: np.random.Generator, style: str):
        self.rng = rng
        self.style = style
        self.sentences: list[tuple[str, str]] = []
        self.gold: dict[str, GoldAnswer] = {}
        self.impression: list[str] = []

    def pick(self, options):
        return options[int(self.rng.integers(len(options)))]

    def chance(self, p: float) -> bool:
        return bool(self.rng.random() < p)

    def add(self, section: str, sentence: str) -> str:
        self.sentences.append((section, sentence))
        return sentence

    def size(self, mm: int) -> str:
        return f"{mm / 10:.1f} cm" if self.chance(0.45) else f"{mm} mm"

    def size2(self, a: int, b: int) -> str:
        if self.chance(0.45):
            return f"{a / 10:.1f} x {b / 10:.1f} cm"
        return f"{a} x {b} mm"

    def negative(self, qid: str, section: str, options, omit_p: float) -> None:
        """A negated topic, or nothing (gold "Not mentioned") with probability ``omit_p``."""
        if self.chance(omit_p):
            self.gold[qid] = not_mentioned(qid)
            return
        text = self.add(section, self.pick(options))
        self.gold[qid] = GoldAnswer(qid, text, False, None, None)


def _cap(text: str) -> str:
    return text[0].upper() + text[1:]


def _lobe_words(w: _Writer, lobe: str) -> str:
    return LOBE_ABBREV[lobe] if w.chance(0.2) else lobe


# ---------------------------------------------------------------------------- topics


def _primary_tumor(w: _Writer, f: Findings) -> None:
    qid = "primary_tumor"
    t = f.tumor
    if t is None:
        w.negative(
            qid,
            "lungs",
            [
                "No pulmonary mass.",
                "No suspicious pulmonary nodule or mass.",
                "No mass lesion is seen in either lung.",
                "No nodular or mass lesion was detected in the lung parenchyma.",
                "There is no focal lung mass.",
            ],
            omit_p=0.3 if w.style != "pe" else 0.45,
        )
        return
    lobe = _lobe_words(w, t.lobe)
    kind = t.kind
    margin = t.margin
    two_d = w.chance(0.4)
    size = w.size2(t.size_mm, t.short_mm) if two_d else w.size(t.size_mm)
    templates = [
        f"A {size} {margin} {kind} in the {lobe}.",
        f"There is a {margin} {kind} in the {lobe} measuring {size}.",
        f"{_cap(lobe)} {kind} with {margin} margins, measuring {size}.",
        f"{_cap(margin)} soft tissue {kind} is seen in the {lobe}, measuring {size}.",
        f"In the {lobe}, a {margin} {kind} of {size} is noted.",
    ]
    text = w.pick(templates)
    if w.style == "pretrain":
        text = text[:-1] + _tumor_texture(w, t.necrosis) + "."
    w.add("lungs", text)
    w.gold[qid] = GoldAnswer(qid, text, True, float(t.size_mm), t.lobe)
    if w.style == "lung":
        w.impression.append(f"{_cap(t.lobe)} {kind}, consistent with the known primary lung malignancy.")
    elif w.style == "pe":
        w.impression.append(f"{_cap(t.lobe)} {kind} ({w.size(t.size_mm)}), suspicious for malignancy; tissue sampling recommended.")
    else:
        w.impression.append(f"{_cap(t.lobe)} {kind}, further evaluation is recommended.")


def _tumor_texture(w: _Writer, necrosis: float) -> str:
    """A clause on the tumour's necrotic core (no number: a size would be read as the tumour's)."""
    if necrosis >= 0.4:
        return w.pick([", with a large central necrotic core", ", largely necrotic with only a thin enhancing rim", ", with extensive central necrosis"])
    if necrosis >= NECROTIC_TUMOR:
        return w.pick([", with central necrosis", ", with a hypoattenuating necrotic centre", ", showing central low attenuation consistent with necrosis"])
    if necrosis > 0.02:
        return w.pick([", with a small focus of central necrosis", ", with minimal central low attenuation"])
    return w.pick([", homogeneously enhancing without necrosis", ", solid and homogeneous", ""])


def _lymph_nodes(w: _Writer, f: Findings) -> None:
    qid = "lymph_nodes"
    if not f.nodes:
        w.negative(
            qid,
            "mediastinum",
            [
                "No mediastinal or hilar lymphadenopathy.",
                "No pathologically enlarged lymph nodes in the mediastinum or hila.",
                "Mediastinal and hilar lymph nodes are not enlarged.",
                "No lymph node of pathological size was found in the mediastinal, hilar or axillary regions.",
            ],
            omit_p=0.3 if w.style != "pe" else 0.5,
        )
        return
    texts, places = [], []
    for node in f.nodes:
        desc = STATIONS[node.station][1]
        station = f" (station {node.station})" if w.chance(0.6) else ""
        size = w.size(node.short_mm)
        templates = [
            f"Enlarged {desc}{station} lymph node measuring {size} in short axis.",
            f"A {size} {desc}{station} lymph node.",
            f"{_cap(desc)}{station} lymphadenopathy, {size} in short axis.",
            f"There is an enlarged lymph node in the {desc} region{station}, measuring {size}.",
        ]
        texts.append(w.add("mediastinum", w.pick(templates)))
        places.append(desc)
    w.gold[qid] = GoldAnswer(qid, " ".join(texts), True, float(max(n.short_mm for n in f.nodes)), "; ".join(places))
    if w.style == "lung":
        w.impression.append("Enlarged " + " and ".join(places) + " lymph nodes, suspicious for nodal metastases.")
    else:
        w.impression.append("Mediastinal/hilar lymphadenopathy.")


def _pleura(w: _Writer, f: Findings) -> None:
    qid = "pleura"
    e = f.effusion
    if e is None:
        w.negative(
            qid,
            "pleura",
            [
                "No pleural effusion.",
                "No pleural effusion or thickening.",
                "The pleural spaces are clear.",
                "No pleural effusion or pleural thickening was observed.",
            ],
            omit_p=0.25,
        )
        return
    grade = w.pick({"small": ["small", "small", "mild"], "moderate": ["moderate"], "large": ["large", "large-volume"]}[e.grade])
    side = e.side
    noun = "pleural effusions" if side == "bilateral" else "pleural effusion"
    stated = w.chance(0.4)
    size = f", measuring {w.size(e.depth_mm)} in maximal thickness" if stated else ""
    templates = [
        f"{_cap(grade)} {side} {noun}{size}.",
        f"There is a {grade} {side} {noun}{size}." if side != "bilateral" else f"There are {grade} bilateral {noun}{size}.",
    ]
    text = w.pick(templates)
    if e.malignant:
        text = text[:-1] + w.pick([", with nodular pleural thickening suspicious for malignant involvement.", ", suspicious for malignant effusion."])
    w.add("pleura", text)
    w.gold[qid] = GoldAnswer(qid, text, True, float(e.depth_mm) if stated else None, side)
    w.impression.append(f"{_cap(grade)} {side} {noun}" + (", likely malignant." if e.malignant else "."))


def _bone_sentences(w: _Writer, f: Findings) -> list[tuple[str, bool]]:
    """Sentences about bone lesions, each with whether it calls the lesion metastatic."""
    out = []
    for lesion in f.bone_lesions:
        size = w.size(lesion.size_mm)
        kind = lesion.kind if lesion.kind == "lytic" else w.pick(["blastic", "sclerotic (blastic)"])
        base = w.pick(
            [
                f"{_cap(kind)} lesion in the {lesion.level} vertebral body measuring {size}",
                f"A {size} {kind} lesion in the {lesion.level} vertebral body",
            ]
        )
        metastatic = w.style != "pretrain"
        tail = w.pick([", consistent with osseous metastasis.", ", suspicious for metastasis."]) if metastatic else w.pick(
            [", further characterisation recommended.", "."]
        )
        out.append((w.add("bones", base + tail), metastatic))
    return out


def _metastases_and_bones(w: _Writer, f: Findings) -> None:
    bone = _bone_sentences(w, f)
    # bones
    if bone or f.degenerative_spine:
        texts, places, sizes = [t for t, _ in bone], [f"{b.level} vertebral body" for b in f.bone_lesions], [b.size_mm for b in f.bone_lesions]
        if f.degenerative_spine:
            texts.append(w.add("bones", w.pick(["Degenerative changes with anterior osteophytes in the thoracic spine.", "Thoracic spondylosis with marginal osteophytes."])))
            places.append("thoracic spine")
        w.gold["bones"] = GoldAnswer("bones", " ".join(texts), True, float(max(sizes)) if sizes else None, "; ".join(places))
        if bone:
            w.impression.append(f"{_cap(f.bone_lesions[0].kind)} osseous lesion at {f.bone_lesions[0].level}" + (", consistent with metastasis." if bone[0][1] else "."))
    else:
        w.negative(
            "bones",
            "bones",
            [
                "No lytic or blastic osseous lesion.",
                "No suspicious osseous lesion.",
                "Bone structures in the scanned area are unremarkable.",
                "Osseous structures are intact without destructive lesion.",
            ],
            omit_p=0.3 if w.style != "pe" else 0.5,
        )
    # metastases: visceral sites, and bone lesions worded as metastatic
    texts, places, sizes = [], [], []
    for met in f.metastases:
        if met.organ == "brain":
            texts.append(w.add("history", w.pick(["History of brain metastases.", "Known brain metastases on prior MRI (brain not included in this study)."])))
            places.append("brain")
            continue
        size = w.size(met.size_mm)
        if met.organ == "liver":
            sentence = w.pick(
                [
                    f"A {size} hypodense lesion in the liver, consistent with metastasis.",
                    f"Hepatic metastasis measuring {size}.",
                    f"Hypoattenuating liver lesion of {size}, suspicious for metastatic disease.",
                ]
            )
        else:
            sentence = w.pick(
                [
                    f"A {size} nodule in the {met.organ}, suspicious for metastasis.",
                    f"{_cap(met.organ.replace(' gland', ''))} mass measuring {size}, consistent with metastasis.",
                ]
            )
        texts.append(w.add("abdomen", sentence))
        places.append(met.organ)
        sizes.append(met.size_mm)
    for (text, metastatic), lesion in zip(bone, f.bone_lesions):
        if metastatic:
            texts.append(text)
            places.append(f"{lesion.level} vertebral body")
            sizes.append(lesion.size_mm)
    if texts:
        w.gold["metastases"] = GoldAnswer("metastases", " ".join(texts), True, float(max(sizes)) if sizes else None, "; ".join(places))
        visceral = [m.organ for m in f.metastases if m.organ != "brain"]
        if visceral:
            w.impression.append("Metastatic disease involving the " + " and ".join(visceral) + ".")
    else:
        w.negative(
            "metastases",
            "abdomen",
            [
                "No evidence of metastatic disease in the imaged upper abdomen.",
                "The liver and adrenal glands are unremarkable.",
                "No hepatic or adrenal lesion.",
                "No space-occupying lesion was detected in the liver or adrenal glands within the scan range.",
            ],
            omit_p=0.3 if w.style != "pe" else 0.5,
        )


_CLOT_WORDS = {
    "right pulmonary artery": "right main pulmonary artery",
    "left pulmonary artery": "left main pulmonary artery",
}


def _vessels(w: _Writer, f: Findings) -> None:
    qid = "vessels"
    texts, places = [], []
    t = f.tumor
    if t is not None and t.vessel is not None:
        vessel = t.vessel if w.chance(0.7) or t.vessel != "superior vena cava" else "SVC"
        if t.vessel_verb == "encases":
            sentence = w.pick([f"The mass encases the {vessel}.", f"The tumor encases and narrows the {vessel}.", f"There is encasement of the {vessel} by the mass."])
        else:
            sentence = w.pick([f"The mass compresses the {vessel}.", f"Extrinsic compression of the {vessel} by the mass, with luminal narrowing."])
        texts.append(w.add("mediastinum", sentence))
        places.append(t.vessel)
        w.impression.append(f"Invasion of the {t.vessel}.")
    if f.clots:
        acute = not f.clots[0].chronic
        saddle = [c for c in f.clots if c.level == "saddle"]
        others = [c for c in f.clots if c.level != "saddle"]
        if saddle:
            texts.append(w.add("pe", "Saddle embolus straddling the bifurcation of the main pulmonary artery."))
            places.append("main pulmonary artery")
        if others:
            plural = len(others) > 1
            if others[0].level == "subsegmental":
                sides = " and ".join(c.vessel.split()[0] for c in others)
                where = (
                    f"subsegmental branches of the {sides} lower lobe pulmonary arteries"
                    if plural
                    else f"a subsegmental branch of the {sides} lower lobe pulmonary artery"
                )
            else:
                names = [_CLOT_WORDS.get(c.vessel, c.vessel) for c in others]
                where = "the " + ", ".join(names[:-1]) + (" and " if plural else "") + names[-1]
            if acute and plural:
                sentence = w.pick(
                    [
                        f"Filling defects in {where}, consistent with acute pulmonary embolism.",
                        f"Acute pulmonary emboli are seen in {where}.",
                        f"There are intraluminal filling defects within {where}, compatible with acute pulmonary emboli.",
                    ]
                )
            elif acute:
                sentence = w.pick(
                    [
                        f"Filling defect in {where}, consistent with acute pulmonary embolism.",
                        f"Acute pulmonary embolus is seen in {where}.",
                        f"There is an intraluminal filling defect within {where}, compatible with an acute pulmonary embolus.",
                    ]
                )
            else:
                noun = "filling defects" if plural else "filling defect"
                sentence = f"Eccentric, wall-adherent {noun} in {where}, compatible with chronic pulmonary embolism."
            texts.append(w.add("pe", sentence))
            places += [c.vessel for c in others]
        w.impression.insert(0, ("Acute" if acute else "Chronic") + " pulmonary embolism" + (" (subsegmental only)." if others and others[0].level == "subsegmental" else "."))
    if texts:
        w.gold[qid] = GoldAnswer(qid, " ".join(texts), True, None, "; ".join(places))
        return
    if w.style == "pe":
        text = w.add("pe", w.pick(["No pulmonary embolism.", "No filling defect in the pulmonary arteries to suggest pulmonary embolism.", "The pulmonary arteries are well opacified without filling defects."]))
        w.gold[qid] = GoldAnswer(qid, text, False, None, None)
        w.impression.insert(0, "No evidence of pulmonary embolism.")
        return
    w.negative(
        qid,
        "vessels",
        [
            "The major mediastinal vessels are patent without invasion.",
            "No vascular invasion or compression.",
            "Mediastinal main vascular structures are of normal calibre and patent.",
            "The great vessels are patent and not encased.",
        ],
        omit_p=0.35,
    )


# ---------------------------------------------------------------------------- other prose


def _other(w: _Writer, f: Findings) -> None:
    if w.style == "pretrain" and w.chance(0.7):
        w.add("airways", w.pick(["Trachea and both main bronchi are patent.", "The trachea and main bronchi are open; no endobronchial lesion.", "Central airways are patent."]))
    if w.style == "pretrain":
        _emphysema(w, f.emphysema_fraction)
    elif w.chance(0.3):
        w.add("lungs", w.pick(["The lungs are clear.", "No consolidation."]))
    if f.consolidation is not None:
        w.add("lungs", w.pick([f"Consolidation in the {f.consolidation}.", f"Patchy consolidation is seen in the {f.consolidation}, likely infectious."]))
        w.impression.append(f"{_cap(f.consolidation)} consolidation, likely pneumonia.")
    if f.granuloma is not None:
        w.add("lungs", w.pick([f"A small calcified granuloma in the {f.granuloma}.", f"Calcified granuloma in the {f.granuloma}, benign."]))
    if w.style == "pretrain" and f.rv_lv_ratio > RV_STRAIN:
        w.add("heart", w.pick(["The right ventricle is dilated, with an enlarged RV/LV ratio.", "Right ventricular enlargement, suggesting right heart strain."]))
        w.impression.append("Right ventricular dilation.")
    if w.style == "pe":
        r = f.rv_lv_ratio
        if r > 1.0 and w.chance(0.8):
            w.add("heart", w.pick([f"The right ventricle is dilated (RV/LV ratio {r:.1f}), suggesting right heart strain.", f"RV/LV ratio of {r:.1f} with flattening of the interventricular septum, consistent with right heart strain."]))
            w.impression.append("Right heart strain.")
        elif r <= 1.0 and w.chance(0.5):
            w.add("heart", w.pick(["No CT evidence of right heart strain.", f"Normal RV/LV ratio ({r:.1f})."]))
    if f.cardiomegaly:
        w.add("heart", w.pick(["Cardiomegaly.", "The heart is enlarged."]))
    elif w.chance(0.5):
        w.add("heart", w.pick(["Heart size is normal.", "Heart contour and size are normal; no pericardial effusion."]))
    if f.coronary_calcification:
        w.add("heart", w.pick(["Coronary artery calcifications.", "Calcified atherosclerotic plaques in the coronary arteries."]))
    if f.hiatal_hernia:
        w.add("abdomen", w.pick(["Small hiatal hernia.", "A sliding hiatal hernia is noted."]))
    if w.style == "pretrain":
        _habitus(w, f.fat_mm)


def _emphysema(w: _Writer, fraction: float) -> None:
    """Emphysema and its extent, graded as the phenotype codes are (pretrain style only)."""
    if fraction <= 0:
        w.add("lungs", w.pick(["Aeration of both lungs is normal; no emphysema.", "The lungs are clear, with normal parenchymal attenuation.", "No emphysema.", "Normal lung density without emphysematous change."]))
        return
    percent = int(round(100 * fraction / 5.0) * 5) or 5
    if fraction >= SEVERE_EMPHYSEMA:
        grade = w.pick(["Severe", "Extensive", "Advanced"])
    elif fraction >= MODERATE_EMPHYSEMA:
        grade = "Moderate"
    else:
        grade = w.pick(["Mild", "Minimal", "Trace"])
    w.add(
        "lungs",
        w.pick(
            [
                f"{grade} centrilobular emphysema, predominantly in the upper lobes.",
                f"{grade} emphysematous changes in both lungs, with upper lobe predominance.",
                f"{grade} emphysema with areas of low attenuation involving about {percent}% of the lung volume.",
                f"Low-attenuation areas of {grade.lower()} emphysema, most pronounced in the upper zones.",
            ]
        ),
    )
    w.impression.append(f"{grade} emphysema.")


def _habitus(w: _Writer, fat_mm: float) -> None:
    """Body habitus and subcutaneous fat, graded as the phenotype codes are (pretrain only)."""
    mm = int(round(fat_mm))
    if fat_mm < CACHEXIA_FAT_MM:
        sentence = w.pick(
            [
                "Paucity of subcutaneous fat, in keeping with cachexia.",
                f"Marked paucity of subcutaneous fat (about {mm} mm over the anterior chest wall) and reduced muscle bulk, suggesting cachexia.",
                "Thin body habitus with very little subcutaneous adipose tissue.",
            ]
        )
        w.impression.append("Cachexia.")
    elif fat_mm < THIN_FAT_MM:
        sentence = w.pick(["Thin subcutaneous fat layer.", f"Slender body habitus; subcutaneous fat measures about {mm} mm."])
    elif fat_mm <= OVERWEIGHT_FAT_MM:
        if w.chance(0.4):
            return
        sentence = w.pick(["Normal body habitus.", "Subcutaneous fat of normal thickness.", f"Subcutaneous fat measures about {mm} mm, within normal limits."])
    elif fat_mm <= OBESITY_FAT_MM:
        sentence = w.pick(["Prominent subcutaneous fat.", f"Generous subcutaneous adipose tissue, about {mm} mm thick."])
    else:
        sentence = w.pick(
            [
                "Abundant subcutaneous adipose tissue, in keeping with obesity.",
                f"Thick subcutaneous fat layer (about {mm} mm), consistent with obese body habitus.",
                "Large body habitus with abundant subcutaneous fat.",
            ]
        )
        w.impression.append("Obese body habitus.")
    w.add("soft_tissues", sentence)


_HISTORY = {
    "lung": ["Indication: staging of lung cancer.", "Clinical information: newly diagnosed lung cancer, staging.", "Indication: known non-small cell lung cancer."],
    "pe": ["Indication: shortness of breath, evaluate for pulmonary embolism.", "Clinical information: chest pain and tachycardia, rule out PE.", "Indication: dyspnea; elevated D-dimer."],
    "pretrain": ["Clinical information: cough.", "Clinical information: follow-up.", "Clinical information: dyspnea.", "Clinical information: chest pain."],
}
_TECHNIQUE = {
    "lung": ["Technique: contrast-enhanced CT of the chest and upper abdomen.", "Technique: CT chest with intravenous contrast."],
    "pe": ["Technique: CT pulmonary angiography.", "Technique: CTPA with intravenous contrast, pulmonary arterial phase."],
    "pretrain": ["Technique: non-contrast and contrast-enhanced thoracic CT.", "Technique: thoracic CT, axial sections."],
}


def write_report(style: str, findings: Findings, rng: np.random.Generator) -> tuple[str, dict[str, GoldAnswer]]:
    """A report and its six gold answers.

    Args:
        style: "pretrain", "lung" or "pe".
        findings: what the study shows.
        rng: the study's generator (choices of words and omissions).

    Returns:
        (report text with "Findings:" and "Impression:" sections, gold answer per question id).
    """
    w = _Writer(rng, style)
    if w.chance(0.8):
        w.add("history", w.pick(_HISTORY[style]))
    if w.chance(0.6):
        w.add("technique", w.pick(_TECHNIQUE[style]))
    _primary_tumor(w, findings)
    _lymph_nodes(w, findings)
    _pleura(w, findings)
    _metastases_and_bones(w, findings)
    _vessels(w, findings)
    _other(w, findings)

    order = {s: i for i, s in enumerate(_ORDER)}
    head = [s for sec, s in w.sentences if sec in ("history", "technique")]
    body = sorted(((order[sec], i, s) for i, (sec, s) in enumerate(w.sentences) if sec not in ("history", "technique")))
    findings_text = " ".join(s for _, _, s in body)
    impression = w.impression or [w.pick(["No acute cardiopulmonary abnormality.", "Unremarkable chest CT.", "No significant abnormality."])]
    if style == "pretrain" and not w.impression and w.chance(0.5):
        impression = [w.pick(["Thoracic CT examination within normal limits.", "No significant pathology."])]
    parts = []
    if head:
        parts.append("\n".join(head))
    parts.append("Findings: " + findings_text)
    parts.append("Impression: " + " ".join(impression))
    return "\n".join(parts), w.gold
