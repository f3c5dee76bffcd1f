"""Deterministic long documents for the evaluation set, the token tests and the benchmark.

`make_document(kind, words, seed)` writes a document of about `words` words (for Chinese and
Japanese: about `words` * 1.6 characters) from sentence templates filled by a seeded RNG, so
the evaluation set can say `{{doc:contract_en:10000:7}}` instead of committing megabytes.
Same arguments, same text, on every machine.
"""

from __future__ import annotations

import random
import re

_PARTIES = [
    "Northwind Logistics GmbH",
    "Acme Analytics Ltd",
    "Blue Harbor Capital LLC",
    "Kestrel Health Inc",
    "Orion Retail SA",
    "Meridian Software BV",
]
_EN_TERMS = [
    "Confidential Information",
    "Services",
    "Deliverables",
    "Fees",
    "Term",
    "Territory",
    "Intellectual Property",
    "Personal Data",
    "Service Levels",
    "Effective Date",
]
_EN_CONTRACT = [
    "{p1} shall provide the {t} to {p2} in accordance with Schedule {n} and the applicable Service Levels.",
    "Either party may terminate this Agreement upon {d} days' written notice if the other party commits a material breach that remains uncured.",
    "All {t} disclosed under this Agreement shall remain the property of the disclosing party and shall not be used for any purpose other than performance of this Agreement.",
    "{p2} shall pay all undisputed invoices within {d} days of receipt; late payments bear interest at {r} percent per annum.",
    "Neither party shall be liable for any indirect, incidental or consequential damages, except in cases of gross negligence or wilful misconduct.",
    "The aggregate liability of {p1} under this clause {n} shall not exceed the Fees paid in the {d} months preceding the claim.",
    "{p1} warrants that the {t} will conform in all material respects to the specifications set out in Annex {n}.",
    "This Agreement shall be governed by the laws of {c}, and the courts of {c} shall have exclusive jurisdiction.",
    "Any amendment to this Agreement must be in writing and signed by authorised representatives of both parties.",
    "{p2} may audit the records of {p1} relating to the {t} once per calendar year on {d} days' prior notice.",
    "Where {p1} processes Personal Data on behalf of {p2}, it shall do so only on documented instructions from {p2}.",
    "Force majeure events shall suspend the affected obligations for so long as the event continues, up to {d} days.",
]
_EN_PAPER = [
    "We evaluate the proposed method on {n} benchmark datasets and observe an average improvement of {r} percent over the strongest baseline.",
    "Prior work on {t} has largely assumed stationary inputs, an assumption that rarely holds in deployed systems.",
    "Table {n} reports ablations in which each component of the architecture is removed in turn.",
    "The variance across {d} random seeds remains below {r} points, suggesting that the gains are robust.",
    "A limitation of our approach is its reliance on labelled data for {t}, which is expensive to collect.",
    "Figure {n} shows that the learning curve saturates after roughly {d} thousand training steps.",
    "We hypothesise that the improvement stems from better calibration of the intermediate representations.",
    "Our analysis of failure cases reveals that most errors occur on inputs longer than {d} tokens.",
    "In contrast to the results reported in Section {n}, the effect disappears when the regulariser is disabled.",
    "Future work should investigate whether these findings transfer to multilingual settings and to {t}.",
]
_EN_REPORT = [
    "Revenue in region {c} grew {r} percent quarter over quarter, driven mainly by {t}.",
    "Operating costs rose by {d} thousand euros, of which the largest share relates to cloud infrastructure.",
    "The team closed {n} of the {d} open incidents; the remaining ones are tracked in the risk register.",
    "Customer churn decreased to {r} percent after the onboarding flow was redesigned.",
    "Headcount is planned to increase by {n} engineers in the next quarter, subject to budget approval.",
    "The audit identified {n} findings, none of which were rated critical.",
    "Supplier lead times in {c} remain elevated at {d} days on average.",
    "Management recommends postponing the {t} initiative until the migration is complete.",
]
_DE_CONTRACT = [
    "Der Auftragnehmer erbringt die Leistungen gemäß Anlage {n} mit der Sorgfalt eines ordentlichen Kaufmanns.",
    "Die Vergütung ist innerhalb von {d} Tagen nach Rechnungsstellung ohne Abzug zur Zahlung fällig.",
    "Jede Partei kann diesen Vertrag mit einer Frist von {d} Tagen zum Monatsende schriftlich kündigen.",
    "Die Haftung des Auftragnehmers ist auf Vorsatz und grobe Fahrlässigkeit beschränkt, soweit gesetzlich zulässig.",
    "Vertrauliche Informationen dürfen nur zur Durchführung dieses Vertrages verwendet werden.",
    "Änderungen und Ergänzungen dieses Vertrages bedürfen der Schriftform; dies gilt auch für die Aufhebung dieser Klausel.",
    "Gerichtsstand ist {c}; es gilt ausschließlich deutsches Recht unter Ausschluss des UN-Kaufrechts.",
    "Der Auftraggeber stellt dem Auftragnehmer alle für die Leistungserbringung erforderlichen Unterlagen rechtzeitig zur Verfügung.",
]
_FR_REPORT = [
    "Le chiffre d'affaires de la région {c} a progressé de {r} pour cent au cours du trimestre.",
    "Les coûts d'exploitation ont augmenté de {d} milliers d'euros, principalement en raison de l'infrastructure.",
    "L'équipe a résolu {n} incidents sur {d}; les autres sont suivis dans le registre des risques.",
    "La direction recommande de reporter le projet jusqu'à la fin de la migration.",
    "Le taux d'attrition des clients a diminué à {r} pour cent après la refonte du parcours d'accueil.",
    "Les délais de livraison des fournisseurs restent élevés, à {d} jours en moyenne.",
]
_ES_TRANSCRIPT = [
    "Ana: Creo que deberíamos revisar el presupuesto de {c} antes del viernes.",
    "Luis: De acuerdo, pero primero necesitamos los datos del trimestre {n}.",
    "Marta: El equipo de soporte cerró {d} incidencias la semana pasada.",
    "Ana: ¿Quién se encarga de preparar la presentación para el comité?",
    "Luis: Yo puedo hacerlo si alguien me envía las cifras de ventas.",
    "Marta: Propongo que la próxima reunión sea el día {n} a las diez.",
    "Jorge: Los clientes de {c} se quejan de los plazos de entrega de {d} días.",
]
_ZH_REPORT = [
    "本季度{c}地区的营业收入同比增长了百分之{r}，主要得益于新产品的推出。",
    "运营成本增加了{d}万元，其中大部分与云基础设施的扩容有关。",
    "团队在本季度共处理了{d}起故障，其中{n}起已经彻底解决。",
    "管理层建议在系统迁移完成之前暂缓推进该项目。",
    "客户流失率在优化注册流程之后下降到了百分之{r}。",
    "供应商的平均交货周期仍然较长，约为{d}天。",
    "审计共发现{n}项问题，均未被评为重大风险。",
    "下一季度计划增加{n}名工程师，具体人数取决于预算审批。",
]
_JA_REPORT = [
    "今四半期の{c}地域の売上高は前年同期比で{r}パーセント増加しました。",
    "運用コストは{d}万円増加し、その大部分はクラウド基盤の拡張によるものです。",
    "チームは今四半期に{d}件の障害に対応し、そのうち{n}件を解決しました。",
    "経営陣は移行作業が完了するまで当該プロジェクトを延期することを推奨しています。",
    "オンボーディングの改善後、顧客の解約率は{r}パーセントまで低下しました。",
    "サプライヤーの平均リードタイムは依然として長く、約{d}日となっています。",
    "監査では{n}件の指摘事項が確認されましたが、重大なものはありませんでした。",
]
_LOG = [
    "2026-05-{n:02d}T10:{d:02d}:17Z INFO  api.request method=GET path=/v1/orders status=200 ms={r}",
    "2026-05-{n:02d}T10:{d:02d}:18Z WARN  db.pool connections={d} max=50 wait_ms={r}",
    "2026-05-{n:02d}T10:{d:02d}:19Z ERROR payment.client timeout after {r}ms upstream=psp-{n}",
    "2026-05-{n:02d}T10:{d:02d}:21Z INFO  worker.job id=job-{d}{n} state=done duration_ms={r}",
    "2026-05-{n:02d}T10:{d:02d}:22Z DEBUG cache.get key=user:{d}{n} hit=false",
]
_PY_FUNC = '''
def {name}_{n}(records: list[dict], limit: int = {d}) -> list[dict]:
    """Return at most `limit` {name} records whose score exceeds {r}."""
    out = []
    for record in records:
        if record.get("score", 0) > {r} and record.get("region") == "{c}":
            out.append({{"id": record["id"], "score": record["score"]}})
        if len(out) >= limit:
            break
    return out

'''
_CITIES = ["Berlin", "Lyon", "Madrid", "Osaka", "Shenzhen", "Toronto", "Oslo", "Porto"]
_NAMES = ["orders", "invoices", "shipments", "users", "events", "metrics"]

KINDS: dict[str, tuple[list[str], str]] = {
    "contract_en": (_EN_CONTRACT, " "),
    "paper_en": (_EN_PAPER, " "),
    "report_en": (_EN_REPORT, " "),
    "contract_de": (_DE_CONTRACT, " "),
    "report_fr": (_FR_REPORT, " "),
    "transcript_es": (_ES_TRANSCRIPT, "\n"),
    "report_zh": (_ZH_REPORT, ""),
    "report_ja": (_JA_REPORT, ""),
    "log": (_LOG, "\n"),
    "code_py": ([_PY_FUNC], ""),
}
_CJK = {"report_zh", "report_ja"}
_TOKEN = re.compile(r"\{\{doc:([a-z_]+):(\d+):(\d+)\}\}")


def _fill(template: str, rng: random.Random) -> str:
    return template.format(
        p1=rng.choice(_PARTIES),
        p2=rng.choice(_PARTIES),
        t=rng.choice(_EN_TERMS),
        c=rng.choice(_CITIES),
        n=rng.randint(1, 28),
        d=rng.randint(5, 59),
        r=rng.randint(2, 97),
        name=rng.choice(_NAMES),
    )


def make_document(kind: str, words: int, seed: int) -> str:
    """About `words` words of `kind` (see KINDS), the same for the same arguments."""
    templates, sep = KINDS[kind]
    rng = random.Random(f"{kind}:{words}:{seed}")
    target = int(words * 1.6) if kind in _CJK else words
    parts: list[str] = []
    size = 0
    section = 1
    while size < target:
        if kind.startswith(("contract", "paper", "report")) and len(parts) % 9 == 0:
            heading = f"\n\n{section}. " if kind not in _CJK else f"\n\n第{section}节\n"
            parts.append(heading)
            section += 1
        sentence = _fill(rng.choice(templates), rng)
        parts.append(sentence)
        size += len(sentence) if kind in _CJK else sentence.count(" ") + 1
    return sep.join(parts).strip()


def expand(text: str) -> str:
    """Replace every `{{doc:kind:words:seed}}` in `text` with its generated document."""
    return _TOKEN.sub(lambda m: make_document(m.group(1), int(m.group(2)), int(m.group(3))), text)
